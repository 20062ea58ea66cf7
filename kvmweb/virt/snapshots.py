"""Domain snapshots: internal (inside qcow2 disks, with memory for a running guest) and external
disk-only ones (a qcow2 overlay per disk), reverting, deleting, and merging an overlay back.

Functions take the domain's UUID and a snapshot name and return ``SnapshotRecord`` values. Refusing
what would lose data is the caller's business (vms/snapshots.py), from what these return.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import libvirt

from kvmweb.virt import lookup
from kvmweb.virt.connection import Connection, connect
from kvmweb.virt.errors import InvalidOperation, NotFound
from kvmweb.virt.target import HostTarget
from kvmweb.virt.xml.domain_edit import domain_devices
from kvmweb.virt.xml.snapshot_spec import ExternalDisk, SnapshotSpec, check_snapshot_name
from kvmweb.virt.xml.snapshot_xml import SnapshotDiskInfo, build_snapshot_xml, snapshot_info

Domain = Any  # a libvirt.virDomain; it never leaves this module
CommitProgress = Callable[[str, int, int], None]  # (disk, done, total)

# How often a block commit's progress is asked for; a module setting so tests can change it.
POLL_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    name: str
    parent: str | None
    description: str
    state: str  # the domain's state when taken: running, paused, shutoff, disk-snapshot
    created: datetime
    current: bool
    has_memory: bool
    external: bool
    disks: tuple[SnapshotDiskInfo, ...]


def list_snapshots(target: HostTarget, uuid: str) -> tuple[SnapshotRecord, ...]:
    """Every snapshot of the domain, parents before their children, oldest first among siblings."""
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        records = [_record(snap) for snap in dom.listAllSnapshots(0)]
    return tuple(sorted(records, key=lambda record: (record.created, record.name)))


@dataclass(frozen=True, slots=True)
class SnapshotMarker:
    """Enough to tell, cheaply, whether a domain's snapshots changed: their names and the current one."""

    names: frozenset[str]
    current: str  # "" when there is none


def snapshot_markers(target: HostTarget, uuids: Iterable[str] | None = None) -> dict[str, SnapshotMarker]:
    """Each domain's marker, by UUID: every domain, or those of `uuids` the host still has.

    Two calls per domain that has snapshots (one for one without), against one per snapshot for
    ``list_snapshots``: for noticing snapshots made outside kvmweb before reading them all.
    """
    markers: dict[str, SnapshotMarker] = {}
    with connect(target) as conn:
        if uuids is None:
            domains = list(conn.listAllDomains(0))
        else:
            domains = []
            for uuid in uuids:
                with suppress(NotFound):
                    domains.append(_domain_or_not_found(conn, uuid))
        for dom in domains:
            with suppress(NotFound):
                markers[str(dom.UUIDString())] = _marker(dom)
    return markers


def _domain_or_not_found(conn: Connection, uuid: str) -> Domain:
    try:
        return lookup.domain(conn, uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise NotFound("The virtual machine was not found.", code=exc.get_error_code(), raw=str(exc)) from exc
        raise


def _marker(dom: Domain) -> SnapshotMarker:
    try:
        names = frozenset(str(snap.getName()) for snap in dom.listAllSnapshots(0))
        current = str(dom.snapshotCurrent(0).getName()) if names else ""
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        if code == libvirt.VIR_ERR_NO_DOMAIN:  # undefined meanwhile
            raise NotFound("The virtual machine was not found.", code=code, raw=str(exc)) from exc
        if code != libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:  # snapshots but none current
            raise
        current = ""
    return SnapshotMarker(names=names, current=current)


def get_snapshot(target: HostTarget, uuid: str, name: str) -> SnapshotRecord:
    with connect(target) as conn:
        return _record(_snapshot(lookup.domain(conn, uuid), name))


def create_snapshot(target: HostTarget, uuid: str, spec: SnapshotSpec) -> SnapshotRecord:
    """Take the snapshot ``spec`` describes; an internal one of a running guest includes its memory."""
    flags = 0
    if spec.disk_only:
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        return _record(dom.snapshotCreateXML(build_snapshot_xml(spec), flags))


def external_disks(target: HostTarget, uuid: str, name: str) -> tuple[tuple[ExternalDisk, ...], tuple[str, ...]]:
    """The overlays a disk-only snapshot ``name`` would create, next to each writable disk, and the
    disks it leaves out (CD-ROMs, read-only or shareable disks)."""
    check_snapshot_name(name)
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        xml = dom.XMLDesc(0)
        paths = _pool_paths(conn, xml)
    overlays, skipped = [], []
    for disk in domain_devices(xml).disks:
        path = disk.source_path or paths.get(disk.target_dev)
        if disk.device != "disk" or disk.readonly or not path:
            skipped.append(disk.target_dev)
            continue
        stem = os.path.splitext(os.path.basename(path))[0]
        overlays.append(ExternalDisk(disk.target_dev, os.path.join(os.path.dirname(path), f"{stem}.{name}.qcow2")))
    return tuple(overlays), tuple(skipped)


def revert_snapshot(target: HostTarget, uuid: str, name: str) -> SnapshotRecord:
    """Go back to ``name``: running, paused or shut off, as it was when taken. The present state is lost."""
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        snap = _snapshot(dom, name)
        record = _record(snap)
        flags = 0
        if record.state == "running" and record.has_memory:
            flags = libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING
        elif record.state == "paused" and record.has_memory:
            flags = libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED
        dom.revertToSnapshot(snap, flags)
        return record


def delete_snapshot(
    target: HostTarget, uuid: str, name: str, *, children: bool = False, children_only: bool = False
) -> None:
    """Delete ``name``; with ``children`` its descendants too; with ``children_only`` just those."""
    flags = 0
    if children_only:
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN_ONLY
    elif children:
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_CHILDREN
    with connect(target) as conn:
        _snapshot(lookup.domain(conn, uuid), name).delete(flags)


def commit_snapshot(target: HostTarget, uuid: str, name: str, *, progress: CommitProgress | None = None) -> list[str]:
    """Merge the overlays of the external snapshot ``name`` back into the disks under them, live.

    Each disk is committed with an active block commit, its progress polled from the block job,
    then pivoted back onto its base; the snapshot's metadata and overlay files are then removed.
    Returns the overlay files that were merged.
    """
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        if not dom.isActive():
            raise InvalidOperation("Merging an overlay needs the VM running: start it first.")
        snap = _snapshot(dom, name)
        overlays = [disk for disk in _record(snap).disks if disk.kind == "external" and disk.path]
        for disk in overlays:
            _commit_disk(dom, disk.target_dev, progress)
        snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        merged = [disk.path for disk in overlays if disk.path]
        for path in merged:
            _delete_file_volume(conn, path)
    return merged


def _commit_disk(dom: Domain, disk: str, progress: CommitProgress | None) -> None:
    dom.blockCommit(disk, None, None, 0, libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE)
    while True:
        info = dom.blockJobInfo(disk, 0)
        if not info:
            raise InvalidOperation(f"The merge of {disk} stopped before it was ready to pivot.")
        done, total = int(info.get("cur", 0)), int(info.get("end", 0))
        if progress is not None:
            progress(disk, done, total)
        if total and done >= total:
            break
        time.sleep(POLL_INTERVAL)  # libvirt's block job has no completion call short of an event stream
    dom.blockJobAbort(disk, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
    # The pivot finishes asynchronously on some versions; wait for the job to go away.
    while dom.blockJobInfo(disk, 0):
        time.sleep(POLL_INTERVAL)


def _delete_file_volume(conn: Connection, path: str) -> None:
    try:
        vol = conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        # Overlays are made by qemu, not the pool: rescan the pool of the directory, then try again.
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            pool.refresh(0)
        try:
            vol = conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            return  # outside every pool: leave the file to the administrator
    vol.delete(0)


def _snapshot(dom: Domain, name: str) -> Any:
    check_snapshot_name(name)
    try:
        return dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            raise NotFound(f"There is no snapshot {name!r}.", code=exc.get_error_code(), raw=str(exc)) from exc
        raise


def _record(snap: Any) -> SnapshotRecord:
    info = snapshot_info(snap.getXMLDesc(0))
    return SnapshotRecord(
        name=info.name,
        parent=info.parent,
        description=info.description,
        state=info.state,
        created=datetime.fromtimestamp(info.created, tz=UTC),
        current=bool(snap.isCurrent(0)),
        has_memory=info.memory in ("internal", "external"),
        external=info.external,
        disks=info.disks,
    )


def _pool_paths(conn: Connection, xml: str) -> dict[str, str]:
    """Paths of the disks that name a pool volume instead of a file, by target."""
    paths = {}
    for disk in domain_devices(xml).disks:
        if disk.source_pool and disk.source_volume:
            try:
                vol = conn.storagePoolLookupByName(disk.source_pool).storageVolLookupByName(disk.source_volume)
            except libvirt.libvirtError:
                continue
            paths[disk.target_dev] = str(vol.path())
    return paths
