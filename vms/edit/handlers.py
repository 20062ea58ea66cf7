"""The hardware editor's actions: the table entries (group "hardware") and their operation handlers.

Each handler re-reads the VM and its host, calls the adapter (kvmweb.virt.devices), refreshes the
row from libvirt and returns what happened, with the adapter's note ("Applied now and kept for
next boot."). A change that reached only the definition of a running VM is recorded in
`vm.pending` until the VM is next seen shut off, so the Hardware tab can say "at next boot".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from django.db.models import F

from hosts.models import Host
from kvmweb import virt
from kvmweb.errors import KvmwebError
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress
from kvmweb.virt import devices, volumes
from kvmweb.virt.devices import Applied
from kvmweb.virt.xml import DiskSpec, NicSpec, VolumeSpec, domain_devices
from kvmweb.virt.xml.domain_edit import NicChange
from storage.models import StoragePool
from storage.services import pool_apply_volumes
from vms import messages, nic_addresses
from vms.actions import ActionSpec, action_register
from vms.edit import checks, nics
from vms.handlers import vm_for_operation, vm_refresh
from vms.models import VirtualMachine

S = VirtualMachine.State
MIB = checks.MIB
LIVE_STATES = frozenset({S.RUNNING, S.BLOCKED, S.PAUSED})
EDITABLE = frozenset({S.RUNNING, S.BLOCKED, S.PAUSED, S.SHUTOFF})
Handler = Callable[[Operation, Progress], dict[str, Any]]


def _applied(applied: Applied) -> dict[str, Any]:
    return {"live": applied.live, "config": applied.config, "note": applied.note}


def _settle(
    host: Host,
    vm: VirtualMachine,
    *,
    pending: Mapping[str, Any] | None = None,
    device: str = "",
    applied: Applied | None = None,
) -> None:
    """Refresh the row from libvirt, then record (or clear) what waits for the next boot, and publish.

    `pending` holds values that only the definition got when `applied.live` is False on a running
    VM, and that the guest has now when it is True; `device` names a device change for next boot.
    """
    uuid = str(vm.uuid)
    with contextlib.suppress(virt.VirtError):  # the change is made; the events process corrects the row
        vm_refresh(host, uuid)
    fresh = VirtualMachine.objects.get(pk=vm.pk)
    waiting = dict(fresh.pending or {})
    for key, value in (pending or {}).items():
        if applied is not None and not applied.live and applied.config and fresh.state in LIVE_STATES:
            waiting[key] = value
        elif applied is not None and applied.live:
            waiting.pop(key, None)
    if device and applied is not None and not applied.live and applied.config and fresh.state in LIVE_STATES:
        waiting["devices"] = [*waiting.get("devices", []), device]
    if waiting != (fresh.pending or {}):
        VirtualMachine.objects.filter(pk=fresh.pk).update(pending=waiting, version=F("version") + 1)
        fresh.refresh_from_db()
        messages.vms_publish([fresh], host_id=host.pk)


def _refresh_pool(host: Host, pool_name: str) -> None:
    """The pool's volume rows from the host, so the page shows the new or grown volume at once."""
    pool = StoragePool.objects.filter(host=host, name=pool_name, gone_since__isnull=True).first()
    if pool is None:
        return
    with contextlib.suppress(virt.VirtError):
        pool_apply_volumes(
            host=host, uuid=str(pool.uuid), volumes=virt.get_pool_volumes(host.virt_target(), str(pool.uuid))
        )


# -- vCPUs and memory -------------------------------------------------------------------------------------------


def _set_resources(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    target, uuid = host.virt_target(), str(vm.uuid)
    result: dict[str, Any] = {}
    notes = []
    if "vcpus" in op.params:
        count = int(op.params["vcpus"])
        progress(20, f"Giving {vm.name} {count} vCPUs")
        applied = devices.set_vcpus(target, uuid, count)
        result["vcpus"] = {"value": count, **_applied(applied)}
        notes.append(f"vCPUs: {applied.note}")
        _settle(host, vm, pending={"vcpus": count}, applied=applied)
    if "memory_mib" in op.params:
        mib = int(op.params["memory_mib"])
        progress(60, f"Giving {vm.name} {mib} MiB of memory")
        applied = devices.set_memory(target, uuid, mib)
        result["memory_mib"] = {"value": mib, **_applied(applied)}
        notes.append(f"Memory: {applied.note}")
        _settle(host, vm, pending={"memory_mib": mib}, applied=applied)
    return {**result, "note": " ".join(notes)}


# -- disks and media --------------------------------------------------------------------------------------------


def _attach_disk(op: Operation, progress: Progress) -> dict[str, Any]:
    """All or nothing: a volume made for the disk is deleted again when attaching it fails."""
    vm, host = vm_for_operation(op)
    target, uuid, params = host.virt_target(), str(vm.uuid), op.params
    dev, created = str(params["target"]), params["source"] == "new"
    if created:
        progress(10, f"Creating {params['name']} ({params['size_mib']} MiB) in pool {params['pool']}")
        spec = VolumeSpec(
            name=params["name"],
            capacity_bytes=int(params["size_mib"]) * MIB,
            format=params["format"],
            allocation=params["allocation"],
        )
        path = volumes.create_volume(target, params["pool"], spec).path or ""
    else:
        path = str(params["path"])
    disk = DiskSpec(
        source_file=path,
        format=params["format"],
        target_dev=dev,
        bus=params["bus"],
        encryption_secret=params.get("secret"),
    )
    progress(50, f"Attaching {path} to {vm.name} as {dev}")
    try:
        applied = devices.attach_disk(target, uuid, disk)
    except Exception as exc:
        if not created:
            raise
        raise _undone(exc, target, path, f"Attaching {dev} to {vm.name} failed") from exc
    finally:
        if created:
            _refresh_pool(host, params["pool"])
    _settle(host, vm, device=f"add disk {dev}", applied=applied)
    return {"target": dev, "path": path, "created": created, **_applied(applied)}


def _undone(exc: Exception, target: virt.HostTarget, path: str, doing: str) -> Exception:
    """The attach failure, saying whether the volume made for it is gone again (keeping libvirt's raw text)."""
    try:
        volumes.delete_volume(target, path)
        tail = f" The new volume {path} was deleted again."
    except virt.VirtError as cleanup:
        tail = f" The new volume {path} could not be deleted ({cleanup.message}); delete it from its pool."
    if isinstance(exc, virt.VirtError):
        return virt.VirtError(f"{doing}: {exc.message}{tail}", code=exc.code, raw=exc.raw)
    reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return KvmwebError(f"{doing}: {reason}{tail}")


def _detach_disk(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    dev = str(op.params["target"])
    progress(30, f"Detaching {dev} from {vm.name} (its image is kept)")
    applied = devices.detach_disk(host.virt_target(), str(vm.uuid), dev)
    _settle(host, vm, device=f"remove disk {dev}", applied=applied)
    return {"target": dev, **_applied(applied)}


def _resize_disk(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    dev, mib = str(op.params["target"]), int(op.params["size_mib"])
    progress(30, f"Growing {dev} of {vm.name} to {mib} MiB")
    applied = devices.resize_disk(host.virt_target(), str(vm.uuid), dev, mib * MIB)
    disk = next((disk for disk in domain_devices(vm.xml).disks if disk.target_dev == dev), None)
    volume = None if disk is None else checks.disk_volume(vm, disk.source_path, disk.source_pool, disk.source_volume)
    if volume is not None:
        _refresh_pool(host, volume.pool.name)
    _settle(host, vm)
    return {"target": dev, "size_mib": mib, **_applied(applied)}


def _change_media(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    dev, path = str(op.params["target"]), op.params.get("path")
    progress(30, f"Inserting {path} into {dev} of {vm.name}" if path else f"Ejecting the media of {dev} of {vm.name}")
    applied = devices.change_media(host.virt_target(), str(vm.uuid), dev, path)
    _settle(host, vm)
    return {"target": dev, "path": path, **_applied(applied)}


# -- network interfaces -----------------------------------------------------------------------------------------


def _attach_nic(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    params = op.params  # checked by nics.check_attach_nic
    network, portgroup, mac = str(params["network"]), params.get("portgroup"), str(params["mac"])
    nic = NicSpec(
        network=network,
        portgroup=portgroup,
        mac=mac,
        model=params["model"],
        link=params.get("link", "up"),
        bandwidth=nics.bandwidth_spec(params.get("bandwidth")),
    )
    where = f"{network}, port group {portgroup}" if portgroup else network
    progress(30, f"Adding a {nic.model} NIC {mac} on {where} to {vm.name}")
    applied = devices.attach_nic(host.virt_target(), str(vm.uuid), nic)
    _settle(host, vm, device=f"add NIC {mac} on {network}", applied=applied)
    nic_addresses.addresses_refresh_vm(vm=vm)
    return {
        "network": network,
        "portgroup": portgroup,
        "model": nic.model,
        "mac": mac,
        "link": nic.link,
        "bandwidth": params.get("bandwidth"),
        **_applied(applied),
    }


def _update_nic(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    params = op.params  # checked by nics.check_update_nic
    mac = str(params["mac"])
    change = NicChange(
        link=params.get("link"),
        bandwidth=nics.bandwidth_spec(params.get("bandwidth")),
        portgroup=params.get("portgroup"),
    )
    what = ", ".join(key for key in ("link", "bandwidth", "portgroup") if key in params)
    progress(30, f"Changing the {what} of NIC {mac} of {vm.name}")
    applied = devices.update_nic(host.virt_target(), str(vm.uuid), mac, change)
    _settle(host, vm, device=f"change NIC {mac}", applied=applied)
    return {**params, **_applied(applied)}


def _detach_nic(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    mac = str(op.params["mac"])
    progress(30, f"Removing the NIC {mac} from {vm.name}")
    applied = devices.detach_nic(host.virt_target(), str(vm.uuid), mac)
    _settle(host, vm, device=f"remove NIC {mac}", applied=applied)
    nic_addresses.addresses_refresh_vm(vm=vm)
    return {"mac": mac, **_applied(applied)}


# -- boot order, name and description ---------------------------------------------------------------------------


def _set_boot_order(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    order = [str(device) for device in op.params["order"]]
    progress(30, f"Setting the boot order of {vm.name}: {', '.join(order)}")
    devices.set_boot_order(host.virt_target(), str(vm.uuid), order)
    running = vm.state in LIVE_STATES
    applied = Applied(
        live=False, config=True, note=devices.NEXT_BOOT if not running else "Saved; used from the next boot."
    )
    _settle(host, vm, pending={"boot": order}, applied=applied)
    return {"order": order, **_applied(applied)}


def _rename(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    name = str(op.params["name"])
    progress(30, f"Renaming {vm.name} to {name}")
    devices.rename_domain(host.virt_target(), str(vm.uuid), name)
    _settle(host, vm)
    return {"name": name, "previous": vm.name, "note": f"Renamed; kvmweb still knows it by its UUID {vm.uuid}."}


def _describe(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    params = op.params
    result: dict[str, Any] = {}
    if "title" in params or "description" in params:
        progress(30, f"Writing the title and description of {vm.name} to its libvirt metadata")
        title = str(params.get("title", vm.title))
        description = str(params.get("description", vm.description))
        devices.set_description(host.virt_target(), str(vm.uuid), description=description, title=title)
        result.update(title=title, description=description)
    if "tags" in params:
        tags = [str(tag) for tag in params["tags"]]
        VirtualMachine.objects.filter(pk=vm.pk).update(tags=tags, version=F("version") + 1)
        result["tags"] = tags
    _settle(host, vm)
    if "tags" in params:  # kvmweb's own field: libvirt's refresh does not see it, so say it here
        messages.vms_publish([VirtualMachine.objects.get(pk=vm.pk)], host_id=host.pk)
    return {**result, "note": "Saved."}


# -- the table --------------------------------------------------------------------------------------------------

_RUNNING_HINT = "{name} is running; libvirt renames only a shut-off VM. Shut it down first."
_BUSY_HINT = "{name} is shutting down; wait until it is shut off."

SPECS: tuple[tuple[ActionSpec, Handler, str], ...] = (
    (
        ActionSpec("set-resources", "Set vCPUs and memory", "cpu", "change vCPUs or memory", EDITABLE,
                   params=("vcpus", "memory_mib"), hints={S.SHUTDOWN: _BUSY_HINT}, group="hardware",
                   check=checks.check_set_resources),
        _set_resources, "Set vCPUs and memory",
    ),
    (
        ActionSpec("attach-disk", "Add disk", "database-plus", "add a disk", EDITABLE,
                   params=("source", "pool", "size_mib", "size_gib", "format", "allocation", "volume", "bus",
                           "target", "name"),
                   hints={S.SHUTDOWN: _BUSY_HINT}, group="hardware", check=checks.check_attach_disk),
        _attach_disk, "Add disk",
    ),
    (
        ActionSpec("detach-disk", "Detach disk", "database-minus", "detach a disk", EDITABLE, danger=True,
                   params=("target",), hints={S.SHUTDOWN: _BUSY_HINT}, group="hardware",
                   check=checks.check_detach_disk),
        _detach_disk, "Detach disk",
    ),
    (
        ActionSpec("resize-disk", "Grow disk", "arrows-maximize", "grow a disk", EDITABLE,
                   params=("target", "size_mib", "size_gib"), hints={S.SHUTDOWN: _BUSY_HINT}, group="hardware",
                   check=checks.check_resize_disk),
        _resize_disk, "Grow disk",
    ),
    (
        ActionSpec("change-media", "Change CD-ROM media", "disc", "change the CD-ROM media", EDITABLE,
                   params=("target", "volume", "eject"), hints={S.SHUTDOWN: _BUSY_HINT}, group="hardware",
                   check=checks.check_change_media),
        _change_media, "Change CD-ROM media",
    ),
    (
        ActionSpec("attach-nic", "Add NIC", "network", "add a network interface", EDITABLE,
                   params=("network", "portgroup", "model", "mac", "link", "bandwidth"),
                   hints={S.SHUTDOWN: _BUSY_HINT}, group="hardware", check=nics.check_attach_nic),
        _attach_nic, "Add NIC",
    ),
    (
        ActionSpec("update-nic", "Change NIC", "adjustments", "change a network interface", EDITABLE,
                   params=("mac", "link", "bandwidth", "portgroup"), hints={S.SHUTDOWN: _BUSY_HINT},
                   group="hardware", check=nics.check_update_nic),
        _update_nic, "Change NIC",
    ),
    (
        ActionSpec("detach-nic", "Remove NIC", "network-off", "remove a network interface", EDITABLE, danger=True,
                   params=("mac",), hints={S.SHUTDOWN: _BUSY_HINT}, group="hardware", check=nics.check_detach_nic),
        _detach_nic, "Remove NIC",
    ),
    (
        ActionSpec("set-boot-order", "Set boot order", "list-numbers", "set the boot order", EDITABLE,
                   params=("order", "boot1", "boot2", "boot3"), hints={S.SHUTDOWN: _BUSY_HINT}, group="hardware",
                   check=checks.check_set_boot_order),
        _set_boot_order, "Set boot order",
    ),
    (
        ActionSpec("rename", "Rename", "forms", "rename", frozenset({S.SHUTOFF}), params=("name",),
                   hints={S.RUNNING: _RUNNING_HINT, S.BLOCKED: _RUNNING_HINT,
                          S.PAUSED: "{name} is paused; libvirt renames only a shut-off VM. Shut it down first."},
                   group="hardware", check=checks.check_rename),
        _rename, "Rename VM",
    ),
    (
        ActionSpec("describe", "Describe", "tags", "change the description", EDITABLE,
                   params=("title", "description", "tags", "fields"), hints={S.SHUTDOWN: _BUSY_HINT}, group="hardware",
                   check=checks.check_describe),
        _describe, "Describe VM",
    ),
)  # fmt: skip

for _spec, _handler, _label in SPECS:
    action_register(_spec)
    # A hardware change made twice is not harmless (two disks, two NICs): fail with the reason instead.
    operation_kind(_spec.kind, label=_label, deadline_seconds=900, retry_transient=False)(_handler)
