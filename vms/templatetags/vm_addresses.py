"""Template filters over a VM's stored NIC addresses (VirtualMachine.addresses, see vms/nic_addresses.py)."""

from collections.abc import Mapping, Sequence
from typing import Any

from django import template

register = template.Library()


@register.filter
def first_ipv4(nics: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """The first IPv4 address of each NIC, in NIC order, each once (static/js/vm_nics.js does the same live)."""
    found: list[str] = []
    for nic in nics or ():
        first = next((a.get("address") for a in nic.get("addresses") or () if a.get("type") == "ipv4"), None)
        if first and first not in found:
            found.append(first)
    return found
