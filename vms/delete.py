"""Deleting a VM: its definition, managed save and snapshot metadata, and optionally its own disks.

A disk is deleted only when nothing else on the host needs it: no other VM or template lists it,
and no volume uses it as a backing file. Every disk kept is listed with the reason it was kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hosts.models import Host
from kvmweb import virt
from kvmweb.errors import Invalid
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress
from kvmweb.virt import volumes
from kvmweb.virt.xml import domain_devices
from storage.models import StoragePool
from vms.actions import ActionSpec, action_register
from vms.handlers import vm_for_operation, vm_refresh
from vms.models import VirtualMachine
from vms.snapshot_models import Snapshot

DISK_CHOICES = ("keep", "delete")


@dataclass(frozen=True)
class DiskFate:
    path: str
    delete: bool
    reason: str = ""


def check_delete_params(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    """`disks` is keep or delete; `confirm` must repeat the VM's name, so nobody deletes the wrong one."""
    disks = str(given.get("disks") or "keep")
    if disks not in DISK_CHOICES:
        raise Invalid("Choose disks=keep or disks=delete.", details={"disks": "keep or delete"})
    if str(given.get("confirm") or "") != vm.name:
        message = f"Type the VM's name, {vm.name}, to confirm the deletion."
        raise Invalid(message, details={"confirm": message})
    return {"disks": disks}


def disk_fates(
    *, xml: str, others: list[tuple[str, str]], vols: list[virt.VolumeRecord], paths: dict[tuple[str, str], str]
) -> list[DiskFate]:
    """What happens to each of the VM's disks (never its CD-ROMs: ISOs are shared by nature).

    `others` is (name, xml) for every other domain on the host, templates included; `vols` every
    volume on the host; `paths` maps (pool, volume) to a path for pool-typed disks.
    """
    used_by: dict[str, str] = {}
    for name, other_xml in others:
        for path in _disk_paths(other_xml, paths):
            used_by.setdefault(path, name)
    backing_of = {vol.backing_path: vol.name for vol in vols if vol.backing_path}
    fates = []
    for path in _disk_paths(xml, paths):
        if path in used_by:
            fates.append(DiskFate(path, False, f"VM {used_by[path]} also uses it."))
        elif path in backing_of:
            fates.append(DiskFate(path, False, f"it is the backing file of {backing_of[path]}."))
        else:
            fates.append(DiskFate(path, True))
    return fates


def _disk_paths(xml: str, paths: dict[tuple[str, str], str]) -> list[str]:
    found = []
    for disk in domain_devices(xml).disks:
        if disk.device != "disk":
            continue
        path = disk.source_path or paths.get((disk.source_pool or "", disk.source_volume or ""))
        if path:
            found.append(path)
    return found


def _delete(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    target, uuid = host.virt_target(), str(vm.uuid)
    progress(10, f"Reading the definition of {vm.name}")
    xml = virt.get_domain_xml(target, uuid, inactive=True)
    fates: list[DiskFate] = []
    if op.params.get("disks") == "delete":
        progress(20, "Finding which disks only this VM uses")
        fates = _fates_on_host(host, uuid, xml)
    progress(40, f"Removing the definition of {vm.name}, its saved state and snapshot metadata")
    virt.undefine_domain(target, uuid)
    # The row stays (marked gone) for its history; its snapshots and saved state went with the definition.
    Snapshot.objects.filter(vm=vm).delete()
    VirtualMachine.objects.filter(pk=vm.pk).update(has_managed_save=False)
    deleted, kept = [], [{"path": fate.path, "reason": fate.reason} for fate in fates if not fate.delete]
    for fate in (fate for fate in fates if fate.delete):
        progress(60, f"Deleting {fate.path}")
        try:
            volumes.delete_volume(target, fate.path)
            deleted.append(fate.path)
        except virt.VirtError as exc:
            kept.append({"path": fate.path, "reason": f"deleting it failed: {exc.message}"})
    vm_refresh(host, uuid)
    return {"deleted": deleted, "kept": kept}


def _fates_on_host(host: Host, uuid: str, xml: str) -> list[DiskFate]:
    """Fresh from the host, not from the database: deleting data is no place for a stale view."""
    target = host.virt_target()
    inventory = virt.get_inventory(target)
    others = [(record.name, record.xml) for record in inventory.domains if record.uuid != uuid and record.xml]
    vols = list(volumes.host_volumes(target))
    pool_names = {
        str(pool_uuid): name for pool_uuid, name in StoragePool.objects.filter(host=host).values_list("uuid", "name")
    }
    pool_names.update({pool.uuid: pool.name for pool in inventory.pools})
    paths = {(pool_names.get(vol.pool_uuid, ""), vol.name): vol.path for vol in vols if vol.path}
    return disk_fates(xml=xml, others=others, vols=vols, paths=paths)


operation_kind("vm.delete", label="Delete VM", deadline_seconds=1800, retry_transient=False)(_delete)
action_register(
    ActionSpec(
        "delete",
        "Delete",
        "trash",
        "delete",
        frozenset({VirtualMachine.State.SHUTOFF, VirtualMachine.State.CRASHED}),
        danger=True,
        params=("disks", "confirm"),
        hints={
            state: "{name} is running. Shut it down or force it off first."
            for state in (VirtualMachine.State.RUNNING, VirtualMachine.State.BLOCKED, VirtualMachine.State.PAUSED)
        },
        group="manage",
        check=check_delete_params,
    )
)
