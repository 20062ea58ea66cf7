"""Bringing hot-plugged vCPUs online inside the guest, through the QEMU guest agent.

A Linux guest's kernel adds a hot-plugged CPU but leaves it offline: onlining it is userspace's job
(udev on a full distribution), which a small or minimal guest may not do. Where the guest agent
answers, libvirt's guest-vCPU API (virDomainSetGuestVcpus, what ``virsh setguestvcpus`` uses) does
it. It is best effort: the vCPUs are plugged either way, so a missing, silent or refusing agent
never fails the change; the sentence returned tells the user what became of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kvmweb.virt.errors import HostUnreachable, VirtError, translated

Domain = Any  # a libvirt.virDomain, lent by kvmweb.virt.devices

NO_AGENT = "No guest agent answered: the guest's OS decides whether to online the new vCPUs."
# The guest's kernel takes QEMU's ACPI hotplug event a moment after the plug; the agent lists the CPU only then.
APPEAR_TIMEOUT = 15.0
_POLL_INTERVAL = 0.2


def online_guest_vcpus(dom: Domain, ids: Sequence[int], *, timeout: float = APPEAR_TIMEOUT) -> str:
    """Ask the guest agent to online the vCPUs ``ids`` once the guest sees them; a sentence on the outcome."""
    try:
        with translated():
            return _online(dom, list(ids), timeout)
    except HostUnreachable:
        raise
    except VirtError as exc:
        return f"The guest agent did not bring {_vcpus_named(ids)} online ({exc}): the guest's OS decides."


def _online(dom: Domain, ids: list[int], timeout: float) -> str:
    listed = _guest_vcpus(dom)
    if listed is None:
        return NO_AGENT
    deadline = time.monotonic() + timeout
    while not set(ids) <= listed["vcpus"]:
        if time.monotonic() > deadline:
            return f"The guest did not see {_vcpus_named(ids)} within {timeout:g} s: the guest's OS decides."
        time.sleep(_POLL_INTERVAL)  # no event says the guest's kernel added the CPU: ask its agent again
        listed = _guest_vcpus(dom) or listed
    for vcpu in ids:
        # one vCPU a call: libvirt warns that agents may take no more
        dom.setGuestVcpus(str(vcpu), 1, 0)
    online = (_guest_vcpus(dom) or listed)["online"]
    if set(ids) <= online:
        return f"The guest brought {_vcpus_named(ids)} online."
    return f"The guest agent left {_vcpus_named(sorted(set(ids) - online))} offline: the guest's OS decides."


def _guest_vcpus(dom: Domain) -> dict[str, set[int]] | None:
    """The guest's vCPU ids, as its agent lists them ({"vcpus", "online"}); None when no agent answers.

    The Python binding returns None instead of raising when libvirt fails here (a driver without the
    API, an agent not configured, not connected or not answering).
    """
    info = dom.guestVcpus(0)
    if not info:
        return None
    return {key: _id_set(str(info.get(key, ""))) for key in ("vcpus", "online")}


def _id_set(cpumap: str) -> set[int]:
    """ "0-2,4" → {0, 1, 2, 4}: libvirt's cpumap syntax as the agent reports it (no "^" exclusions)."""
    ids: set[int] = set()
    for part in filter(None, cpumap.split(",")):
        first, _, last = part.partition("-")
        ids.update(range(int(first), int(last or first) + 1))
    return ids


def _vcpus_named(ids: Sequence[int]) -> str:
    return f"vCPU{'s' if len(ids) > 1 else ''} {', '.join(str(i) for i in ids)}"
