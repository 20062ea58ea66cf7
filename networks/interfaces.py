"""The host's own interfaces (physical NICs, bridges, bonds), read by the host refresh and kept on the host's row.

Pages read ``Host.interfaces``; nothing here runs while a page renders.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from hosts.models import Host
from kvmweb import virt
from kvmweb.virt import networks as virt_networks

log = logging.getLogger(__name__)


def host_interfaces_refresh(*, host: Host) -> dict[str, Any]:
    """Read the host's interfaces and store them; a failure is recorded, never raised (the refresh goes on)."""
    try:
        found = virt_networks.list_host_interfaces(host.virt_target())
    except virt.VirtError as exc:
        log.info("interfaces of host %s not read: %s", host.pk, exc.raw or exc.message)
        value: dict[str, Any] = {**(host.interfaces or {}), "error": exc.message}
    else:
        value = {
            "read": timezone.now().isoformat(),
            "reported": found is not None,
            "items": [item.to_dict() for item in found or ()],
        }
    if value != host.interfaces:
        host.interfaces = value
        Host.objects.filter(pk=host.pk).update(interfaces=value)
    return value


def host_interfaces(host: Host) -> dict[str, Any]:
    """What the host page shows: ``items`` (NICs first, then bridges...), ``reported``, ``read``, ``error``."""
    stored = host.interfaces or {}
    order = {"ethernet": 0, "bond": 1, "vlan": 2, "bridge": 3}
    items = sorted(stored.get("items") or [], key=lambda i: (order.get(i.get("type"), 9), i.get("name", "")))
    return {
        "items": items,
        "read": parse_datetime(stored["read"]) if stored.get("read") else None,
        "reported": stored.get("reported"),
        "error": stored.get("error", ""),
    }
