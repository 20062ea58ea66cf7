"""The WebSocket payloads for VMs, and who may see them."""

from collections.abc import Sequence
from typing import Any

from kvmweb.realtime import groups
from kvmweb.realtime.publish import publish
from vms.models import VirtualMachine

# Past this many changes in one go, one "look again" message replaces per-VM messages.
COALESCE_ABOVE = 50


def vm_payload(vm: VirtualMachine) -> dict[str, Any]:
    return {
        "type": "vm.state",
        "vm": str(vm.uuid),
        "host": vm.host_id,
        "name": vm.name,
        "state": vm.state,
        "state_label": vm.get_state_display(),
        "reason": vm.state_reason,
        "vcpus": vm.vcpus,
        "memory_kib": vm.memory_kib,
        "autostart": vm.autostart,
        "version": vm.version,
    }


def vm_groups(vm: VirtualMachine) -> list[str]:
    audience = [groups.ADMINS, groups.target_group("vm", str(vm.uuid))]
    if vm.owner_id is not None:
        audience.append(groups.user_group(vm.owner_id))
    return audience


def vms_publish(vms: Sequence[VirtualMachine], *, host_id: int) -> None:
    """Per-VM messages for a few changes; for a burst, one message that tells pages to look again."""
    if len(vms) > COALESCE_ABOVE:
        owners = {vm.owner_id for vm in vms if vm.owner_id is not None}
        audience = [groups.ADMINS, *(groups.user_group(owner) for owner in owners)]
        publish(audience, {"type": "vm.bulk", "host": host_id, "changed": len(vms)})
        return
    for vm in vms:
        publish(vm_groups(vm), vm_payload(vm))
