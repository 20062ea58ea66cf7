"""VM snapshots: the rows pages read, the guardrails, the actions and their operation handlers.

Actions (in the VM action table, group "snapshots"): snapshot-create, snapshot-revert,
snapshot-delete, snapshot-commit and snapshot-refresh, each an operation `vm.snapshot-*`. Each
``check_*`` refuses, from the stored rows and XML and before libvirt is asked, what libvirt would
turn into data loss, in words a user can act on. Handlers rewrite the VM's snapshot rows afterwards.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from hosts.models import Host
from kvmweb import virt
from kvmweb.errors import Conflict, Invalid, NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress
from kvmweb.virt import snapshots as virt_snapshots
from kvmweb.virt.xml import SnapshotSpec, domain_devices
from kvmweb.virt.xml.snapshot_spec import MAX_DESCRIPTION, check_snapshot_name
from storage.models import Volume
from vms.actions import ANY_STATE, RUNNING, ActionSpec, action_register
from vms.handlers import vm_for_operation, vm_refresh
from vms.models import VirtualMachine
from vms.snapshot_models import RawDisk, Snapshot, SnapshotSupport

S = VirtualMachine.State
SNAPSHOT_STATES = RUNNING | {S.PAUSED, S.SHUTOFF}
DELETE_CHILDREN = ("none", "with", "only")
_TRUE = ("1", "true", "on", "yes")


# -- reads -----------------------------------------------------------------------------------------


def vm_snapshots(vm: VirtualMachine) -> list[Snapshot]:
    """The VM's snapshots as stored, in tree order (parents first, with their depth)."""
    return list(Snapshot.objects.filter(vm=vm))


def vm_snapshot(vm: VirtualMachine, name: str) -> Snapshot:
    snapshot = Snapshot.objects.filter(vm=vm, name=name).first()
    if snapshot is None:
        raise NotVisible(f"{vm.name} has no snapshot named {name!r}.")
    return snapshot


def snapshot_support(vm: VirtualMachine) -> SnapshotSupport:
    """What kinds of snapshot `vm` can take now, and why not, from the database only."""
    raw = _raw_disks(vm)
    rows = list(Snapshot.objects.filter(vm=vm).only("name", "external"))
    external = [row.name for row in rows if row.external]
    internal = [row.name for row in rows if not row.external]
    internal_refusal = external_refusal = ""
    if raw:
        listed = ", ".join(f"{disk.target_dev} ({disk.path})" for disk in raw)
        internal_refusal = (
            f"{vm.name} has a raw disk: {listed}. Raw disks cannot hold internal snapshots; "
            "convert the disk to qcow2 to enable them, or take a disk-only (external) snapshot."
        )
    elif external:
        internal_refusal = (
            f"{vm.name} has external snapshot {', '.join(external)}: merge it first. libvirt cannot revert "
            "internal snapshots taken on top of an external overlay."
        )
    if internal:
        external_refusal = (
            f"{vm.name} has internal snapshots ({', '.join(internal)}). After an external overlay goes on top, "
            "libvirt could no longer revert to them: delete them first, or take another internal snapshot."
        )
    elif not _writable_disks(vm):
        external_refusal = f"{vm.name} has no writable disk to put an overlay on."
    return SnapshotSupport(internal_refusal=internal_refusal, external_refusal=external_refusal, raw_disks=raw)


def _writable_disks(vm: VirtualMachine) -> list[Any]:
    if not vm.xml:
        return []
    return [disk for disk in domain_devices(vm.xml).disks if disk.device == "disk" and not disk.readonly]


def _raw_disks(vm: VirtualMachine) -> list[RawDisk]:
    found = []
    for disk in _writable_disks(vm):
        if disk.format != "raw":
            continue
        volumes = Volume.objects.filter(pool__host_id=vm.host_id)
        if disk.source_path:
            volume = volumes.filter(path=disk.source_path).first()
            path = disk.source_path
        else:
            volume = volumes.filter(pool__name=disk.source_pool or "", name=disk.source_volume or "").first()
            path = f"{disk.source_pool}/{disk.source_volume}"
        found.append(RawDisk(target_dev=disk.target_dev, path=path, volume=volume))
    return found


def _descendants(rows: Iterable[Snapshot], name: str) -> list[Snapshot]:
    children: dict[str, list[Snapshot]] = defaultdict(list)
    for row in rows:
        children[row.parent_name].append(row)
    found, todo = [], list(children.get(name, []))
    while todo:
        row = todo.pop(0)
        found.append(row)
        todo.extend(children.get(row.name, []))
    return found


# -- checks: untrusted input, before any libvirt call -----------------------------------------------


def _flag(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).lower() in _TRUE


def _named(vm: VirtualMachine, given: dict[str, Any]) -> Snapshot:
    name = str(given.get("snapshot") or "")
    if not name:
        raise Invalid("Say which snapshot: snapshot=<name>.", details={"snapshot": "Required."})
    try:
        return vm_snapshot(vm, name)
    except NotVisible as exc:
        raise Invalid(exc.message, details={"snapshot": exc.message}) from None


def check_create(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    name = str(given.get("name") or "").strip()
    try:
        check_snapshot_name(name)
    except virt.InvalidArgument as exc:
        raise Invalid(exc.message, details={"name": exc.message}) from None
    description = str(given.get("description") or "")
    if len(description) > MAX_DESCRIPTION:
        message = f"A snapshot description has at most {MAX_DESCRIPTION} characters."
        raise Invalid(message, details={"description": message})
    if Snapshot.objects.filter(vm=vm, name=name).exists():
        message = f"{vm.name} already has a snapshot named {name}."
        raise Invalid(message, details={"name": message})
    disk_only = _flag(given.get("disk_only"), False)
    memory = _flag(given.get("memory"), True)
    support = snapshot_support(vm)
    if disk_only:
        if support.external_refusal:
            raise Conflict("Cannot take a disk-only snapshot: " + support.external_refusal)
    else:
        if support.internal_refusal:
            raise Conflict("Cannot take an internal snapshot: " + support.internal_refusal)
        if vm.state != S.SHUTOFF and not memory:
            message = (
                f"An internal snapshot of a running VM always includes its memory. Keep memory on, "
                f"choose a disk-only (external) snapshot, or shut {vm.name} down first."
            )
            raise Invalid(message, details={"memory": message})
    return {"name": name, "description": description, "disk_only": disk_only}


def check_revert(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    row = _named(vm, given)
    if row.external:
        raise Conflict(
            f"Cannot revert to {row.name}: it is an external (disk-only) snapshot, which kvmweb does not revert. "
            "Merge it to keep the present state in the disks."
        )
    external = [other.name for other in Snapshot.objects.filter(vm=vm, external=True)]
    if external:
        raise Conflict(
            f"Cannot revert to {row.name}: external snapshot {', '.join(external)} sits on top of the disks, "
            "and libvirt cannot revert internal snapshots under an overlay. Merge it first."
        )
    return {"snapshot": row.name}


def check_delete(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    row = _named(vm, given)
    children = str(given.get("children") or "none")
    if children not in DELETE_CHILDREN:
        raise Invalid("children is none, with or only.", details={"children": "none, with or only"})
    rows = list(Snapshot.objects.filter(vm=vm))
    descendants = _descendants(rows, row.name)
    if children == "only" and not descendants:
        raise Invalid(f"{row.name} has no child snapshots to delete.")
    external_below = [child.name for child in descendants if child.external]
    if children != "none" and external_below:
        raise Conflict(
            f"Cannot delete the children of {row.name}: {', '.join(external_below)} is an external snapshot "
            "whose overlay the VM writes to. Merge it first."
        )
    if row.external and children != "only":
        if descendants:
            raise Conflict(
                f"Cannot delete {row.name}: the overlays of {', '.join(child.name for child in descendants)} "
                "depend on it."
            )
        raise Conflict(
            f"Cannot delete {row.name}: the VM now writes to its overlay, and deleting the snapshot would "
            "leave that overlay with nothing to fall back to. Merge it instead: that folds the overlay into "
            "the disk and removes the snapshot."
        )
    return {"snapshot": row.name, "children": children}


def check_commit(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    row = _named(vm, given)
    if not row.external:
        raise Conflict(f"Cannot merge {row.name}: it is an internal snapshot, with no overlay to merge.")
    if not row.is_current or _descendants(Snapshot.objects.filter(vm=vm), row.name):
        raise Conflict(f"Cannot merge {row.name}: merge the newest external snapshot first.")
    return {"snapshot": row.name}


def check_refresh(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    return {}


# -- writes ---------------------------------------------------------------------------------------


def snapshots_store(vm: VirtualMachine, records: Iterable[virt_snapshots.SnapshotRecord]) -> list[Snapshot]:
    """Replace the VM's snapshot rows with `records`, laid out as a tree."""
    records = list(records)
    names = {record.name for record in records}
    children: dict[str | None, list[virt_snapshots.SnapshotRecord]] = defaultdict(list)
    for record in records:
        children[record.parent if record.parent in names else None].append(record)
    rows: list[Snapshot] = []

    def walk(parent: str | None, depth: int) -> None:
        for record in sorted(children.get(parent, []), key=lambda r: (r.created, r.name)):
            rows.append(_row(vm, record, depth, len(rows)))
            walk(record.name, depth + 1)

    walk(None, 0)
    with transaction.atomic():
        Snapshot.objects.filter(vm=vm).delete()
        Snapshot.objects.bulk_create(rows)
    return rows


def _row(vm: VirtualMachine, record: virt_snapshots.SnapshotRecord, depth: int, position: int) -> Snapshot:
    return Snapshot(
        vm=vm,
        name=record.name,
        parent_name=record.parent or "",
        description=record.description,
        state=record.state,
        created=record.created,
        is_current=record.current,
        has_memory=record.has_memory,
        external=record.external,
        disks=[{"target_dev": d.target_dev, "kind": d.kind, "path": d.path} for d in record.disks],
        depth=depth,
        position=position,
    )


def snapshots_refresh(vm: VirtualMachine) -> list[Snapshot]:
    """Read the VM's snapshots from its host and store them.

    Refreshes of one VM take turns on its row's lock, each reading while it holds it: a snapshot's pause
    and resume make the events process refresh while the worker that took it does, and without turns
    the second insert fails on the first's rows, or a read from before the snapshot is stored last.
    """
    with transaction.atomic():
        VirtualMachine.objects.select_for_update().filter(pk=vm.pk).values_list("pk").first()
        return snapshots_store(vm, virt_snapshots.list_snapshots(vm.host.virt_target(), str(vm.uuid)))


def snapshots_stale(vm: VirtualMachine, marker: virt_snapshots.SnapshotMarker) -> bool:
    """Whether the rows disagree with what the host says: other names, or another current snapshot."""
    rows = list(Snapshot.objects.filter(vm=vm).values_list("name", "is_current"))
    current = next((name for name, is_current in rows if is_current), "")
    return {name for name, _ in rows} != marker.names or current != marker.current


def snapshots_sync(host: Host, vms: Iterable[VirtualMachine] | None = None) -> list[VirtualMachine]:
    """Re-read the snapshots of the host's VMs (or of `vms`) whose rows are stale; returns those re-read.

    Snapshots made, reverted or deleted outside kvmweb show up here. Cheap when nothing changed:
    two calls per VM on one connection; a full listing only for a VM whose snapshots changed.
    """
    rows = list(vms) if vms is not None else list(VirtualMachine.objects.filter(host=host).exclude(state=S.GONE))
    if not rows:
        return []
    uuids = None if vms is None else [str(vm.uuid) for vm in rows]
    markers = virt_snapshots.snapshot_markers(host.virt_target(), uuids)
    reread = []
    for vm in rows:
        marker = markers.get(str(vm.uuid))
        if marker is None or not snapshots_stale(vm, marker):
            continue
        with contextlib.suppress(virt.NotFound):  # undefined since the markers were read
            snapshots_refresh(vm)
            reread.append(vm)
    return reread


# -- operation handlers ---------------------------------------------------------------------------


def _after(vm: VirtualMachine, host: Host) -> None:
    """Refresh the rows and the VM after a change, which may itself have failed: that is the error to report."""
    with contextlib.suppress(virt.VirtError):
        snapshots_refresh(vm)
    with contextlib.suppress(virt.VirtError):
        vm_refresh(host, str(vm.uuid))


def _create(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    target, uuid = host.virt_target(), str(vm.uuid)
    name = str(op.params["name"])
    try:
        if op.params.get("disk_only"):
            progress(10, f"Finding the disks of {vm.name}")
            overlays, skipped = virt_snapshots.external_disks(target, uuid, name)
            spec = SnapshotSpec(
                name=name,
                description=str(op.params.get("description", "")),
                disk_only=True,
                external_disks=overlays,
                skipped_disks=skipped,
            )
            progress(30, f"Putting overlays on the disks of {vm.name}")
        else:
            spec = SnapshotSpec(name=name, description=str(op.params.get("description", "")))
            memory = "its disks and memory" if vm.state != S.SHUTOFF else "its disks"
            progress(20, f"Taking snapshot {name} of {vm.name}: {memory}")
        record = virt_snapshots.create_snapshot(target, uuid, spec)
    finally:
        _after(vm, host)
    return {
        "snapshot": record.name,
        "external": record.external,
        "memory": record.has_memory,
        "overlays": [d.path for d in record.disks if d.kind == "external"],
    }


def _revert(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    name = str(op.params["snapshot"])
    progress(20, f"Reverting {vm.name} to snapshot {name}")
    try:
        record = virt_snapshots.revert_snapshot(host.virt_target(), str(vm.uuid), name)
    finally:
        _after(vm, host)
    return {"snapshot": name, "state": record.state if record.has_memory else "shutoff"}


def _delete(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    name, children = str(op.params["snapshot"]), str(op.params.get("children", "none"))
    what = {"none": f"snapshot {name}", "with": f"snapshot {name} and its children", "only": f"the children of {name}"}
    progress(20, f"Deleting {what[children]} of {vm.name}")
    try:
        virt_snapshots.delete_snapshot(
            host.virt_target(), str(vm.uuid), name, children=children == "with", children_only=children == "only"
        )
    finally:
        _after(vm, host)
    return {"snapshot": name, "children": children}


def _commit(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    name = str(op.params["snapshot"])
    progress(5, f"Merging the overlays of {name} into the disks of {vm.name}")

    def report(disk: str, done: int, total: int) -> None:
        percent = 5 + int(90 * done / total) if total else 5
        progress(percent, f"Merging {disk}: {done >> 20} of {total >> 20} MiB")

    try:
        merged = virt_snapshots.commit_snapshot(host.virt_target(), str(vm.uuid), name, progress=report)
    finally:
        _after(vm, host)
    return {"snapshot": name, "merged": merged}


def _refresh(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, _host = vm_for_operation(op)
    progress(20, f"Reading the snapshots of {vm.name}")
    return {"snapshots": len(snapshots_refresh(vm))}


_STOPPED_HINT = "{name} is shut off. Start it first: an overlay is merged while the VM runs."
_SPECS = (
    (
        ActionSpec(
            "snapshot-create",
            "Take snapshot",
            "camera",
            "take a snapshot",
            SNAPSHOT_STATES,
            params=("name", "description", "memory", "disk_only"),
            group="snapshots",
            check=check_create,
        ),
        "Take snapshot",
        _create,
    ),
    (
        ActionSpec(
            "snapshot-revert",
            "Revert",
            "history",
            "revert",
            SNAPSHOT_STATES,
            danger=True,
            confirm="Revert {name}? Its present state is lost unless you take a snapshot of it first.",
            params=("snapshot",),
            group="snapshots",
            check=check_revert,
        ),
        "Revert to snapshot",
        _revert,
    ),
    (
        ActionSpec(
            "snapshot-delete",
            "Delete snapshot",
            "trash",
            "delete the snapshot",
            SNAPSHOT_STATES,
            danger=True,
            params=("snapshot", "children"),
            group="snapshots",
            check=check_delete,
        ),
        "Delete snapshot",
        _delete,
    ),
    (
        ActionSpec(
            "snapshot-commit",
            "Merge",
            "git-merge",
            "merge the snapshot",
            RUNNING,
            params=("snapshot",),
            hints={S.SHUTOFF: _STOPPED_HINT},
            group="snapshots",
            check=check_commit,
        ),
        "Merge snapshot (block commit)",
        _commit,
    ),
    (
        ActionSpec(
            "snapshot-refresh",
            "Reread snapshots",
            "refresh",
            "reread the snapshots",
            ANY_STATE,
            group="snapshots",
            check=check_refresh,
        ),
        "Reread snapshots",
        _refresh,
    ),
)
for _spec, _label, _handler in _SPECS:
    action_register(_spec)
    operation_kind(_spec.kind, label=_label, deadline_seconds=3600, retry_transient=False)(_handler)
