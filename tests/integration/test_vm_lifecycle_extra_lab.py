"""More of the VM lifecycle for real: API → Redis → a Celery worker → libvirtd in the lab.

Deleting takes the managed-save image and the snapshot metadata along with the VM; vCPUs are
hot-plugged into a running guest up to its maximum; a full clone logs its copy's progress.
(A disk kept because it backs another VM's overlay is covered in test_vm_create_lab.py.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from kvmweb import virt
from kvmweb.virt import volumes
from kvmweb.virt.xml import DiskSpec, DomainSpec, VolumeSpec, build_domain_xml
from tests.integration import test_vm_create_lab as lab_api
from tests.lab.guests import POOL, Guest, ensure_guest, remove_guest, unique_guest_name
from tests.lab.hosts import LabHost
from tests.lab.virsh import virsh
from vms.models import VirtualMachine
from vms.snapshot_models import Snapshot

pytestmark = pytest.mark.integration

# The API client, host row and worker, and the clean-up of the guests a test names, as the create tests have them.
setup = lab_api.setup
names = lab_api.names
act = lab_api.act
MIB = 1 << 20
CLONE_DISK_MIB = 256


@pytest.fixture(scope="module")
def hotplug_guest(lab_host: LabHost) -> Iterator[Guest]:
    """A tiny guest booted with 1 vCPU of a maximum of 2, its agent answering."""
    name = unique_guest_name("hotplug")
    remove_guest(lab_host, name)
    guest = ensure_guest(lab_host, name, data_disk=False, start=False)
    virsh(lab_host.uri, "setvcpus", guest.uuid, "2", "--config", "--maximum", timeout=30)
    virsh(lab_host.uri, "setvcpus", guest.uuid, "1", "--config", timeout=30)
    guest.start()
    guest.wait_for_marker(120)
    guest.wait_for_agent(60)
    yield guest
    remove_guest(lab_host, name)


def on_host(lab: LabHost, path: str) -> bool:
    return lab.host_path(path).exists()


def test_delete_with_disks_takes_the_managed_save_and_snapshots_along(setup, names) -> None:  # type: ignore[no-untyped-def]
    lab: LabHost = setup["lab"]
    name = unique_guest_name("delsave")
    names.append(name)
    assert lab_api.create(setup, name).status == "succeeded"
    uuid = str(VirtualMachine.objects.get(name=name, host=setup["host"]).uuid)
    disk = f"{lab_api.POOL_DIR}/{name}-disk0.qcow2"
    for action, params in (("snapshot-create", {"name": "before"}), ("start", {}), ("save", {})):
        done = act(setup, uuid, action, **params)
        assert done.status == "succeeded", (action, done.error)
    # Where libvirt's qemu driver keeps them (qemu.conf: save_dir, snapshot metadata under the state dir).
    save_file, snapshot_xml = f"/var/lib/libvirt/qemu/save/{name}.save", f"/var/lib/libvirt/qemu/snapshot/{name}"
    assert on_host(lab, save_file) and on_host(lab, f"{snapshot_xml}/before.xml")
    row = VirtualMachine.objects.get(uuid=uuid)
    assert (row.state, row.has_managed_save, [s.name for s in row.snapshots.all()]) == ("shutoff", True, ["before"])

    op = act(setup, uuid, "delete", disks="delete", confirm=name)

    assert op.status == "succeeded", (op.error, op.log)
    assert op.result == {"deleted": [disk], "kept": []}
    assert name not in virsh(lab.uri, "list", "--all", "--name", timeout=30).split()
    assert not on_host(lab, save_file) and not on_host(lab, f"{snapshot_xml}/before.xml")
    assert volumes.volume_by_path(lab.target, disk) is None and not on_host(lab, disk)
    row = VirtualMachine.objects.get(uuid=uuid)
    assert row.state == "gone" and not row.has_managed_save
    assert not Snapshot.objects.filter(vm__uuid=uuid).exists()


def cpu_list(guest: Guest, which: str) -> str:
    return guest.read_file(f"/sys/devices/system/cpu/{which}").decode().strip()


def test_vcpus_within_the_maximum_are_hot_plugged_into_the_running_guest(setup, hotplug_guest) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = hotplug_guest
    assert cpu_list(guest, "present") == "0"

    op = act(setup, guest.uuid, "set-resources", vcpus=2)

    assert op.status == "succeeded", (op.error, op.log)
    assert op.result["vcpus"] == {
        "value": 2,
        "live": True,
        "config": True,
        "note": "Applied now and kept for next boot. The guest brought vCPU 1 online.",
    }
    assert virsh(guest.host.uri, "vcpucount", guest.uuid, "--live", "--active", timeout=30).strip() == "2"
    # The tiny guest has no udev to online a hot-plugged CPU: the operation did it through the guest agent.
    assert (cpu_list(guest, "present"), cpu_list(guest, "online")) == ("0-1", "0-1")
    row = setup["api"].get(f"/api/v1/vms/{guest.uuid}/").json()
    assert row["vcpus"] == 2 and VirtualMachine.objects.get(uuid=guest.uuid).pending == {}


def define_with_fragmented_disk(lab: LabHost, name: str) -> int:
    """A shut-off VM whose raw disk holds data in every other 4 KiB; returns the disk's allocation.

    qemu-img copies such a file extent by extent, taking a few of the clone's progress intervals
    (volumes.PROGRESS_INTERVAL), so reports usually come mid-copy; a dense file copies within one.
    """
    spec = VolumeSpec(name=f"{name}-data.raw", capacity_bytes=CLONE_DISK_MIB * MIB, format="raw")
    path = volumes.create_volume(lab.target, POOL, spec).path or ""
    with lab.host_path(path).open("r+b") as image:
        for offset in range(0, CLONE_DISK_MIB * MIB, 8192):
            image.seek(offset)
            image.write(b"\x5a" * 4096)
    disk = DiskSpec(pool=POOL, volume=f"{name}-data.raw", format="raw")
    virt.define_domain(
        lab.target, build_domain_xml(DomainSpec(name=name, memory_mib=64, vcpus=1, domain_type="qemu", disks=(disk,)))
    )
    volume = volumes.volume_by_path(lab.target, path)
    assert volume is not None and volume.allocation
    return volume.allocation


def test_a_full_clone_logs_the_progress_of_its_disk_copy(setup, names) -> None:  # type: ignore[no-untyped-def]
    name, copy = unique_guest_name("bigsrc"), unique_guest_name("bigcopy")
    names.extend([name, copy])
    allocation = define_with_fragmented_disk(setup["lab"], name) // MIB
    lab_api.refresh(setup["host"])
    uuid = str(VirtualMachine.objects.get(name=name, host=setup["host"]).uuid)

    op = act(setup, uuid, "clone", name=copy, mode="full")

    assert op.status == "succeeded", (op.error, op.log)
    messages = [entry["message"] for entry in op.log]
    assert f"Copying {name}-data.raw to {copy}-disk0.qcow2" in messages
    line = re.compile(rf"Copying {re.escape(copy)}-disk0\.qcow2: (\d+) of (\d+) MiB")
    reports = [(int(m[1]), int(m[2])) for m in map(line.fullmatch, messages) if m]
    done = [copied for copied, _ in reports]
    assert reports and {total for _, total in reports} == {allocation}, messages
    # Reports come while the copy is under way, but not always: the host may hold back the allocation
    # query until the copy is over (volumes.clone_volume), leaving only the final report.
    assert done == sorted(done) and done[-1] == allocation, op.log
