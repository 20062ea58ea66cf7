"""Hardware and definition edits for real: kvmweb.virt.devices against the lab's libvirtd (qemu:///system).

This module brings its own guests, so the session's shared tiny guest keeps its hardware: a running
one (``it-devices-p<pid>``, booted, agent answering) and a shut-off one with a CD-ROM drive
(``it-devoff-p<pid>``). Volumes made here have names unique to the run and are deleted after. (The
vCPU hot-plug into a guest booted below its maximum is in test_vm_lifecycle_extra_lab.py.)
"""

from __future__ import annotations

import contextlib
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace

import pytest

from kvmweb import virt
from kvmweb.virt.devices import (
    NEXT_BOOT,
    NOW_AND_NEXT_BOOT,
    Applied,
    DefineRefused,
    attach_disk,
    attach_nic,
    change_media,
    detach_disk,
    detach_nic,
    redefine_domain_xml,
    rename_domain,
    resize_disk,
    set_boot_order,
    set_description,
    set_memory,
    set_vcpus,
)
from kvmweb.virt.xml import DiskSpec, NicSpec, build_domain_xml, clone_domain_xml, domain_devices, parse_xml
from tests.lab.errors import LabError
from tests.lab.guests import POOL, Guest, ensure_guest, ensure_volume, guest_spec, remove_guest, unique_guest_name
from tests.lab.hosts import LabHost
from tests.lab.virsh import virsh
from tests.stack import wait_until

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def guest(lab_host: LabHost) -> Iterator[Guest]:
    name = unique_guest_name("devices")
    remove_guest(lab_host, name)
    made = ensure_guest(lab_host, name, data_disk=True, start=True, wait=True, timeout=90)
    made.wait_for_agent(60)
    yield made
    remove_guest(lab_host, name)


@pytest.fixture(scope="module")
def off_guest(lab_host: LabHost) -> Iterator[Guest]:
    """A shut-off guest with its data disk and an empty SATA CD-ROM drive; it may be renamed by a test."""
    name = unique_guest_name("devoff")
    remove_guest(lab_host, name)
    ensure_volume(lab_host, f"{name}-data.qcow2")
    spec = guest_spec(name, uuid=str(uuidlib.uuid4()))
    spec = replace(spec, disks=(*spec.disks, DiskSpec(device="cdrom", bus="sata", target_dev="sda")))
    summary = virt.define_domain(lab_host.target, build_domain_xml(spec))
    yield Guest(host=lab_host, name=name, uuid=summary.uuid)
    with contextlib.suppress(virt.NotFound):
        virt.undefine_domain(lab_host.target, summary.uuid)
    remove_guest(lab_host, name)


@pytest.fixture
def volume(lab_host: LabHost) -> Iterator[tuple[str, str]]:
    """A fresh 8 MiB qcow2 volume in the lab pool: (name, path)."""
    name = f"it-devvol-{uuidlib.uuid4().hex[:8]}.qcow2"
    virsh(lab_host.uri, "vol-create-as", POOL, name, "8M", "--format", "qcow2", timeout=60)
    yield name, virsh(lab_host.uri, "vol-path", name, "--pool", POOL, timeout=30).strip()
    with contextlib.suppress(LabError):
        virsh(lab_host.uri, "vol-delete", name, "--pool", POOL, timeout=30)


def _live_xml(guest: Guest) -> str:
    return virsh(guest.host.uri, "dumpxml", guest.uuid, timeout=30)


def _config_xml(guest: Guest) -> str:
    return virsh(guest.host.uri, "dumpxml", "--inactive", guest.uuid, timeout=30)


def _targets(xml: str) -> set[str]:
    return {disk.target_dev for disk in domain_devices(xml).disks}


def _vcpucount(guest: Guest, *flags: str) -> int:
    return int(virsh(guest.host.uri, "vcpucount", guest.uuid, *flags, timeout=30).strip())


def _volume_capacity(host: LabHost, name: str) -> int:
    info = virsh(host.uri, "vol-info", name, "--pool", POOL, "--bytes", timeout=30)
    return int(info.split("Capacity:")[1].split()[0])


def _ensure_running(guest: Guest) -> None:
    if not guest.is_running():
        guest.start()
        guest.wait_for_marker(90)
        guest.wait_for_agent(60)


# -- a running guest -----------------------------------------------------------------------------


def test_running_guest_balloons_down_now_and_for_next_boot(guest: Guest) -> None:
    _ensure_running(guest)

    applied = set_memory(guest.host.target, guest.uuid, 160)

    assert applied == Applied(live=True, config=True, note=NOW_AND_NEXT_BOOT)
    # The balloon driver in the guest gives the memory back; libvirt then reports the new size.
    wait_until(
        lambda: virt.get_domain(guest.host.target, guest.uuid).memory_kib == 160 * 1024,
        timeout=30,
        what="the guest's balloon to reach 160 MiB",
    )
    config = parse_xml(_config_xml(guest))
    assert (config.findtext("memory"), config.findtext("currentMemory")) == ("196608", "163840")


def test_vcpus_beyond_a_running_guests_maximum_wait_for_next_boot(guest: Guest) -> None:
    _ensure_running(guest)

    applied = set_vcpus(guest.host.target, guest.uuid, 2)

    assert applied == Applied(
        live=False, config=True, note="The VM is running and 2 vCPUs exceeds its maximum of 1: applied at next boot."
    )
    assert _vcpucount(guest, "--live", "--active") == 1
    assert _vcpucount(guest, "--config", "--maximum") == 2
    assert _vcpucount(guest, "--config", "--active") == 2


def test_disk_is_plugged_grown_and_unplugged_while_the_guest_runs(guest: Guest, volume: tuple[str, str]) -> None:
    _ensure_running(guest)
    name, _path = volume
    target = guest.host.target

    attached = attach_disk(target, guest.uuid, DiskSpec(pool=POOL, volume=name, target_dev="vdb"))

    assert attached == Applied(live=True, config=True, note=NOW_AND_NEXT_BOOT)
    assert "vdb" in _targets(_live_xml(guest)) and "vdb" in _targets(_config_xml(guest))
    # The guest itself sees the new disk (8 MiB = 16384 sectors).
    wait_until(lambda: _guest_sectors(guest, "vdb") == 16384, timeout=30, what="vdb inside the guest")

    grown = resize_disk(target, guest.uuid, "vdb", 16 * MIB)

    assert grown.live is True
    assert _volume_capacity(guest.host, name) == 16 * MIB
    wait_until(lambda: _guest_sectors(guest, "vdb") == 32768, timeout=30, what="vdb to grow inside the guest")
    with pytest.raises(virt.InvalidArgument, match="only growing is allowed"):
        resize_disk(target, guest.uuid, "vdb", 8 * MIB)

    detached = detach_disk(target, guest.uuid, "vdb")

    assert detached.live is True and detached.config is True
    wait_until(lambda: "vdb" not in _targets(_live_xml(guest)), timeout=30, what="vdb to leave the running guest")
    assert "vdb" not in _targets(_config_xml(guest))
    assert _guest_sectors(guest, "vdb") is None


def test_a_sata_drive_waits_for_next_boot_on_a_running_guest(guest: Guest) -> None:
    _ensure_running(guest)
    target = guest.host.target

    applied = attach_disk(target, guest.uuid, DiskSpec(device="cdrom", bus="sata", target_dev="sdb"))

    assert applied == Applied(
        live=False, config=True, note="A sata drive cannot be plugged into a running VM: added for next boot."
    )
    assert "sdb" not in _targets(_live_xml(guest)) and "sdb" in _targets(_config_xml(guest))
    assert detach_disk(target, guest.uuid, "sdb") == Applied(live=False, config=True, note=NEXT_BOOT)
    assert "sdb" not in _targets(_config_xml(guest))


def _guest_sectors(guest: Guest, dev: str) -> int | None:
    code, out = guest.run("/bin/cat", f"/sys/block/{dev}/size")
    return int(out.strip()) if code == 0 and out.strip().isdigit() else None


# -- a shut-off guest ----------------------------------------------------------------------------


def test_cd_media_is_inserted_and_ejected_in_a_shut_off_guest(off_guest: Guest, volume: tuple[str, str]) -> None:
    _name, path = volume
    target = off_guest.host.target

    inserted = change_media(target, off_guest.uuid, "sda", path)

    assert inserted == Applied(live=False, config=True, note=NEXT_BOOT)
    [cdrom] = [disk for disk in domain_devices(_config_xml(off_guest)).disks if disk.target_dev == "sda"]
    assert (cdrom.device, cdrom.source_path, cdrom.format, cdrom.readonly) == ("cdrom", path, "raw", True)

    change_media(target, off_guest.uuid, "sda", None)

    [cdrom] = [disk for disk in domain_devices(_config_xml(off_guest)).disks if disk.target_dev == "sda"]
    assert cdrom.source_path is None


def test_a_shut_off_guests_volume_grows(off_guest: Guest) -> None:
    volume = f"{off_guest.name}-data.qcow2"
    before = _volume_capacity(off_guest.host, volume)

    applied = resize_disk(off_guest.host.target, off_guest.uuid, "vda", before + 16 * MIB)

    assert applied.live is False and applied.config is True
    assert _volume_capacity(off_guest.host, volume) == before + 16 * MIB


def test_a_nic_is_added_and_removed_for_next_boot(off_guest: Guest) -> None:
    target = off_guest.host.target
    mac = "52:54:00:4b:57:01"

    assert attach_nic(target, off_guest.uuid, NicSpec(network="default", mac=mac)) == Applied(
        live=False, config=True, note=NEXT_BOOT
    )
    assert [nic.mac for nic in domain_devices(_config_xml(off_guest)).nics] == [mac]

    detach_nic(target, off_guest.uuid, mac.upper())

    assert domain_devices(_config_xml(off_guest)).nics == ()


def test_boot_order_and_description_are_saved(off_guest: Guest) -> None:
    target = off_guest.host.target

    set_boot_order(target, off_guest.uuid, ["cdrom", "hd"])
    set_description(target, off_guest.uuid, description="first line\nsecond line", title="Devices lab")

    root = parse_xml(_config_xml(off_guest))
    assert domain_devices(ET.tostring(root, encoding="unicode")).boot == ("cdrom", "hd")
    assert (root.findtext("title"), root.findtext("description")) == ("Devices lab", "first line\nsecond line")


@pytest.mark.parametrize(
    ("before", "inserted", "complaint", "pointed_at"),
    [
        # Refused by the schema, which names the element.
        ("<on_crash>", "  <flavour>spicy</flavour>", "extra content: flavour", "<flavour>"),
        # Valid for the schema; refused by libvirt's own checks, which quote the target.
        (
            "<memballoon",
            "    <disk type='file' device='disk'><source file='/x.qcow2'/><target dev='vda' bus='virtio'/></disk>",
            "vda",
            "dev='vda'",
        ),
    ],
)
def test_a_refused_definition_leaves_the_guest_as_it_was(
    off_guest: Guest, before: str, inserted: str, complaint: str, pointed_at: str
) -> None:
    original = _config_xml(off_guest)
    lines = original.splitlines()
    at = next(i for i, line in enumerate(lines) if before in line)
    edited = [*lines[:at], inserted, *lines[at:]]

    with pytest.raises(DefineRefused) as refused:
        redefine_domain_xml(off_guest.host.target, off_guest.uuid, "\n".join(edited))

    assert complaint in refused.value.raw
    assert refused.value.line is not None, refused.value.raw
    assert pointed_at in edited[refused.value.line - 1], (refused.value.line, refused.value.raw)
    assert _config_xml(off_guest) == original


def test_an_edited_definition_is_saved(off_guest: Guest) -> None:
    edited = _config_xml(off_guest).replace("<on_crash>destroy</on_crash>", "<on_crash>restart</on_crash>")

    summary = redefine_domain_xml(off_guest.host.target, off_guest.uuid, edited)

    assert summary.uuid == off_guest.uuid
    assert parse_xml(_config_xml(off_guest)).findtext("on_crash") == "restart"


def test_a_shut_off_guest_is_renamed(off_guest: Guest) -> None:
    new_name = unique_guest_name("devoff-renamed")

    rename_domain(off_guest.host.target, off_guest.uuid, new_name)

    assert virsh(off_guest.host.uri, "domname", off_guest.uuid, timeout=30).strip() == new_name
    rename_domain(off_guest.host.target, off_guest.uuid, off_guest.name)
    assert virsh(off_guest.host.uri, "domname", off_guest.uuid, timeout=30).strip() == off_guest.name


def test_a_running_guest_is_not_renamed(guest: Guest) -> None:
    _ensure_running(guest)

    with pytest.raises(virt.InvalidOperation, match="Shut the VM down"):
        rename_domain(guest.host.target, guest.uuid, unique_guest_name("never"))

    assert virsh(guest.host.uri, "domname", guest.uuid, timeout=30).strip() == guest.name


def test_a_clone_of_a_lab_guest_is_accepted_by_libvirt(off_guest: Guest, volume: tuple[str, str]) -> None:
    _name, path = volume
    clone_name = unique_guest_name("devclone")
    xml = clone_domain_xml(
        _config_xml(off_guest),
        name=clone_name,
        disk_sources={f"{POOL}/{off_guest.name}-data.qcow2": (path, "qcow2")},
    )

    clone = virt.define_domain(off_guest.host.target, xml)
    try:
        defined = parse_xml(virsh(off_guest.host.uri, "dumpxml", "--inactive", clone.uuid, timeout=30))
        assert clone.uuid != off_guest.uuid and clone.name == clone_name
        assert defined.find("devices/graphics/listen").get("socket").endswith(f"/{clone_name}.sock")  # type: ignore[union-attr]
        assert defined.find("devices/serial/log").get("file").endswith(f"/{clone_name}-serial.log")  # type: ignore[union-attr]
        assert [d.source_path for d in domain_devices(ET.tostring(defined, encoding="unicode")).disks] == [path, None]
    finally:
        virt.undefine_domain(off_guest.host.target, clone.uuid)
