"""Each running VM's NIC addresses, read from libvirt server side and kept on the VM's row.

Pages never ask libvirt: the stats sampler calls `addresses_sample_host` on its rounds (at most once
every `ADDRESSES_EVERY` seconds per host), and the NIC actions refresh their VM at once. An address
comes from the guest agent where it is connected (it knows static and IPv6 addresses too), else
from libvirt's DHCP leases. A change is stored and pushed as `vm.addresses`; nothing is written
when nothing changed, and a VM that stops running loses its addresses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from hosts.models import Host
from kvmweb import virt
from kvmweb.realtime.publish import publish
from kvmweb.virt import devices
from stats import store
from vms.messages import vm_groups
from vms.models import VirtualMachine

log = logging.getLogger(__name__)

ADDRESSES_EVERY = 30  # seconds between two reads of one host's addresses
SOURCES = {"lease": "DHCP lease", "agent": "guest agent"}


def addresses_sample_host(*, host: Host, running: Sequence[str]) -> list[VirtualMachine] | None:
    """Read the addresses of `host`'s running VMs when they are due; None when not due or unreadable."""
    if not _due(host.pk):
        return None
    try:
        found = devices.get_interface_addresses(host.virt_target(), running)
    except virt.VirtError as exc:  # the sampler and the watcher report the host's state
        log.info("addresses: could not read %s: %s", host.name, exc)
        return None
    return addresses_apply(host_id=host.pk, found=found)


def addresses_refresh_vm(*, vm: VirtualMachine) -> list[VirtualMachine]:
    """Read one VM's addresses now (after a NIC change); a failure leaves them for the next round."""
    try:
        found = devices.get_interface_addresses(vm.host.virt_target(), [str(vm.uuid)])
    except virt.VirtError as exc:
        log.info("addresses: could not read %s: %s", vm.name, exc)
        return []
    return addresses_apply(host_id=vm.host_id, found=found, only=str(vm.uuid))


def addresses_apply(
    *, host_id: int, found: Mapping[str, Sequence[devices.NicAddresses]], only: str | None = None
) -> list[VirtualMachine]:
    """Store what was read for `host_id`'s VMs (or just `only`); VMs not in `found` have none. Returns the changed."""
    rows = VirtualMachine.objects.filter(host_id=host_id).exclude(state=VirtualMachine.State.GONE)
    if only is not None:
        rows = rows.filter(uuid=only)
    changed = []
    for vm in rows.only("pk", "uuid", "host_id", "owner_id", "addresses"):
        now = addresses_json(found.get(str(vm.uuid), ()))
        if now == (vm.addresses or []):
            continue
        VirtualMachine.objects.filter(pk=vm.pk).update(addresses=now)
        vm.addresses = now
        publish(vm_groups(vm), addresses_message(vm))
        changed.append(vm)
    return changed


def addresses_json(nics: Sequence[devices.NicAddresses]) -> list[dict[str, Any]]:
    return [nic.to_dict() for nic in nics]


def addresses_message(vm: VirtualMachine) -> dict[str, Any]:
    return {"type": "vm.addresses", "vm": str(vm.uuid), "host": vm.host_id, "nics": list(vm.addresses or [])}


def _due(host_id: int) -> bool:
    """True at most once per `ADDRESSES_EVERY` per host, whichever worker asks (Redis SET NX with expiry)."""
    try:
        return bool(store.client().set(f"{store.prefix()}addresses:{host_id}", 1, nx=True, ex=ADDRESSES_EVERY))
    except redis.RedisError as exc:
        log.info("addresses: Redis unavailable (%s); reading anyway", exc)
        return True
