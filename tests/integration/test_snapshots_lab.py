"""Snapshots for real, on the lab's libvirtd, through the services and the real operation runner.

A guest of this module's own (the tiny lab guest with a qcow2 data disk): an internal snapshot with
memory, a file written afterwards through qemu-ga, a revert that loses the file and leaves the guest
running; a snapshot of the shut-off guest; deletes; an external disk-only snapshot merged back with
block commit, with progress; and a raw-disk VM that refuses internal snapshots in plain words.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.errors import Conflict
from kvmweb.virt import snapshots as virt_snapshots
from kvmweb.virt import volumes
from kvmweb.virt.xml import DiskSpec, DomainSpec, VolumeSpec, build_domain_xml, domain_devices
from tests.factories import make_host, make_user
from tests.lab.errors import LabError
from tests.lab.guests import POOL, Guest, ensure_guest, remove_guest, unique_guest_name
from tests.lab.hosts import LabHost
from tests.runs import actor_of, run
from vms.actions import vm_action
from vms.models import VirtualMachine
from vms.snapshot_models import Snapshot

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MARKER_FILE = "/tmp/kvmweb-snapshot-marker"


@pytest.fixture(scope="module")
def snap_guest(lab_host: LabHost) -> Iterator[Guest]:
    name = unique_guest_name("snaps")
    guest = ensure_guest(lab_host, name, start=True, wait=True, timeout=120)
    yield guest
    with contextlib.suppress(virt.VirtError):
        for record in virt_snapshots.list_snapshots(lab_host.target, guest.uuid):
            with contextlib.suppress(virt.VirtError):
                virt_snapshots.delete_snapshot(lab_host.target, guest.uuid, record.name, children=True)
    remove_guest(lab_host, name)
    virt.close_all()


@pytest.fixture
def owner(db: Any) -> Any:
    return make_user("alice")


@pytest.fixture
def vm(lab_host: LabHost, snap_guest: Guest, owner: Any) -> VirtualMachine:
    host = make_host("lab", uri=lab_host.uri, members=(owner,))
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
    row = VirtualMachine.objects.get(uuid=snap_guest.uuid)
    row.owner = owner
    row.save(update_fields=["owner"])
    return row


def act(vm: VirtualMachine, action: str, **params: Any) -> Any:
    fresh = VirtualMachine.objects.select_related("host").get(pk=vm.pk)
    op = run(vm_action(actor=actor_of(fresh.owner), vm=fresh, action=action, params=params))
    assert op.status == "succeeded", f"{op.error}\n{op.error_detail}"
    return op


def on_host(guest: Guest) -> list[str]:
    return sorted(record.name for record in virt_snapshots.list_snapshots(guest.host.target, guest.uuid))


def vda_path(guest: Guest) -> str | None:
    """The file under vda now; a disk naming a pool volume is resolved through the pool."""
    xml = virt.get_domain_xml(guest.host.target, guest.uuid)
    disk = next(disk for disk in domain_devices(xml).disks if disk.target_dev == "vda")
    if disk.source_path is None and disk.source_pool and disk.source_volume:
        volume = volumes.volume_in_pool(guest.host.target, disk.source_pool, disk.source_volume)
        return volume.path if volume is not None else None
    return disk.source_path


def test_internal_snapshot_with_memory_reverts_the_running_guest(vm, snap_guest):  # type: ignore[no-untyped-def]
    snap_guest.wait_for_agent(60)
    op = act(vm, "snapshot-create", name="it-ram", description="before the marker")
    assert op.result["memory"] is True
    row = Snapshot.objects.get(vm=vm, name="it-ram")
    assert (row.state, row.has_memory, row.is_current, row.external) == ("running", True, True, False)

    snap_guest.write_file(MARKER_FILE, b"written after the snapshot\n")
    assert snap_guest.read_file(MARKER_FILE) == b"written after the snapshot\n"

    act(vm, "snapshot-revert", snapshot="it-ram")
    assert snap_guest.state() == "running"
    snap_guest.wait_for_agent(60)
    with pytest.raises(LabError):  # the guest's memory went back: the file was never written
        snap_guest.read_file(MARKER_FILE)
    assert VirtualMachine.objects.get(pk=vm.pk).state == "running"

    # Shut off: the next snapshot holds the disks only, and reverting to it leaves the guest shut off.
    snap_guest.destroy()
    snap_guest.wait_for_state("shutoff")
    op = act(vm, "snapshot-create", name="it-off")
    assert op.result["memory"] is False
    assert Snapshot.objects.get(vm=vm, name="it-off").state == "shutoff"
    act(vm, "snapshot-revert", snapshot="it-ram")
    assert snap_guest.state() == "running"
    act(vm, "snapshot-revert", snapshot="it-off")
    assert snap_guest.state() == "shutoff"
    assert [(r.name, r.depth) for r in Snapshot.objects.filter(vm=vm)] == [("it-ram", 0), ("it-off", 1)]

    act(vm, "snapshot-delete", snapshot="it-off")
    assert on_host(snap_guest) == ["it-ram"]
    act(vm, "snapshot-delete", snapshot="it-ram", children="with")
    assert on_host(snap_guest) == []
    assert not Snapshot.objects.filter(vm=vm).exists()


def test_external_snapshot_then_block_commit_with_progress(vm, snap_guest, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(virt_snapshots, "POLL_INTERVAL", 0.05)
    if not snap_guest.is_running():
        snap_guest.start()
        snap_guest.wait_for_marker(120)
    base = vda_path(snap_guest)
    assert base is not None
    op = act(vm, "snapshot-create", name="it-ext", disk_only="on")
    overlay = f"{os.path.dirname(base)}/{os.path.splitext(os.path.basename(base))[0]}.it-ext.qcow2"
    assert op.result == {"snapshot": "it-ext", "external": True, "memory": False, "overlays": [overlay]}
    assert vda_path(snap_guest) == overlay
    row = Snapshot.objects.get(vm=vm, name="it-ext")
    assert row.external and row.overlays == [{"target_dev": "vda", "kind": "external", "path": overlay}]
    assert snap_guest.host.host_path(overlay).exists()

    # Guardrails on the real thing: no internal snapshot on top, no delete of what the VM writes to.
    with pytest.raises(Conflict, match="merge it first"):
        vm_action(actor=actor_of(vm.owner), vm=vm, action="snapshot-create", params={"name": "it-in"})
    with pytest.raises(Conflict, match="Merge it instead"):
        vm_action(actor=actor_of(vm.owner), vm=vm, action="snapshot-delete", params={"snapshot": "it-ext"})

    snap_guest.write_file(MARKER_FILE, b"kept by the merge\n")
    op = act(vm, "snapshot-commit", snapshot="it-ext")
    assert op.result == {"snapshot": "it-ext", "merged": [overlay]}
    assert any("Merging vda" in str(entry) for entry in op.log), op.log
    assert vda_path(snap_guest) == base
    assert on_host(snap_guest) == []
    assert not Snapshot.objects.filter(vm=vm).exists()
    assert not snap_guest.host.host_path(overlay).exists()
    assert snap_guest.read_file(MARKER_FILE) == b"kept by the merge\n"


def test_a_raw_disk_vm_refuses_internal_snapshots(lab_host: LabHost, owner):  # type: ignore[no-untyped-def]
    target = lab_host.target
    name = f"it-snapraw-{uuid.uuid4().hex[:8]}"
    volume = volumes.create_volume(target, POOL, VolumeSpec(name=f"{name}.raw", capacity_bytes=16 << 20, format="raw"))
    spec = DomainSpec(
        name=name,
        memory_mib=64,
        vcpus=1,
        domain_type="qemu",
        disks=(DiskSpec(pool=POOL, volume=f"{name}.raw", format="raw"),),
    )
    summary = virt.define_domain(target, build_domain_xml(spec))
    try:
        host = make_host("lab", uri=lab_host.uri, members=(owner,))
        host_reconcile(host=host, inventory=virt.get_inventory(target))
        raw_vm = VirtualMachine.objects.select_related("host").get(uuid=summary.uuid)
        raw_vm.owner = owner
        raw_vm.save(update_fields=["owner"])
        with pytest.raises(Conflict) as info:
            vm_action(actor=actor_of(owner), vm=raw_vm, action="snapshot-create", params={"name": "nope"})
        assert info.value.message == (
            f"Cannot take an internal snapshot: {name} has a raw disk: vda ({POOL}/{name}.raw). Raw disks cannot hold "
            "internal snapshots; convert the disk to qcow2 to enable them, or take a disk-only (external) snapshot."
        )
        assert virt_snapshots.list_snapshots(target, summary.uuid) == ()
    finally:
        virt.undefine_domain(target, summary.uuid)
        volumes.delete_volume(target, volume.path or "")
