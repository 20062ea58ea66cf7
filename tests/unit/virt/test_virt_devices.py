"""Hardware and definition edits on libvirt's test driver.

The test driver changes vCPUs, memory, metadata, names and definitions, live and in the config,
but has no device hotplug, media change, block resize or volume resize: those calls are shown to
come back as a translated ``Unsupported`` here and are exercised for real in
tests/integration/test_devices_lab.py.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path

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
from kvmweb.virt.xml import DiskSpec, DomainSpec, NicSpec, build_domain_xml, domain_devices, parse_xml
from tests.unit.virt.nodefile import NodePool, NodeVolume

DefineScratch = Callable[..., virt.DomainSummary]
MakeNode = Callable[..., virt.HostTarget]

# The test driver's own limit for any domain type (virConnectGetMaxVcpus).
TEST_DRIVER_MAX_VCPUS = 32


def _config(target: virt.HostTarget, uuid: str) -> str:
    return virt.get_domain_xml(target, uuid, inactive=True)


def _running(target: virt.HostTarget, define_scratch: DefineScratch, **overrides: object) -> virt.DomainSummary:
    summary = define_scratch(**overrides)
    virt.start_domain(target, summary.uuid)
    return summary


def _vcpu(xml: str) -> tuple[str | None, str | None]:
    vcpu = parse_xml(xml).find("vcpu")
    assert vcpu is not None
    return vcpu.text, vcpu.get("current")


def _memory_kib(xml: str) -> tuple[str | None, str | None]:
    root = parse_xml(xml)
    return root.findtext("memory"), root.findtext("currentMemory")


# -- vCPUs ---------------------------------------------------------------------------------------


def test_vcpus_of_a_shut_off_vm_change_for_next_boot_raising_its_maximum(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    applied = set_vcpus(target, scratch_domain.uuid, 3)

    assert applied == Applied(live=False, config=True, note=NEXT_BOOT)
    assert _vcpu(_config(target, scratch_domain.uuid)) == ("3", None)
    assert virt.get_domain(target, scratch_domain.uuid).vcpus == 3


def test_vcpus_of_a_running_vm_change_now_and_for_next_boot(
    target: virt.HostTarget, define_scratch: DefineScratch
) -> None:
    vm = _running(target, define_scratch, vcpus=2)

    applied = set_vcpus(target, vm.uuid, 1)

    assert applied == Applied(live=True, config=True, note="Applied now and kept for next boot.")
    assert virt.get_domain(target, vm.uuid).vcpus == 1
    assert _vcpu(_config(target, vm.uuid)) == ("2", "1")


def test_vcpus_plugged_into_a_running_vm_are_left_to_the_guest_without_an_agent(
    target: virt.HostTarget, define_scratch: DefineScratch
) -> None:
    vm = _running(target, define_scratch, vcpus=2)
    set_vcpus(target, vm.uuid, 1)

    # The test driver has no guest agent (virDomainGetGuestVcpus is unsupported): the plug stands, and says so.
    applied = set_vcpus(target, vm.uuid, 2)

    assert applied == Applied(
        live=True,
        config=True,
        note="Applied now and kept for next boot. "
        "No guest agent answered: the guest's OS decides whether to online the new vCPUs.",
    )
    assert virt.get_domain(target, vm.uuid).vcpus == 2
    assert _vcpu(_config(target, vm.uuid)) == ("2", None)


def test_vcpus_above_a_running_vms_maximum_wait_for_next_boot(
    target: virt.HostTarget, define_scratch: DefineScratch
) -> None:
    vm = _running(target, define_scratch, vcpus=2)

    applied = set_vcpus(target, vm.uuid, 4)

    assert applied == Applied(
        live=False, config=True, note="The VM is running and 4 vCPUs exceeds its maximum of 2: applied at next boot."
    )
    assert virt.get_domain(target, vm.uuid).vcpus == 2
    assert _vcpu(_config(target, vm.uuid)) == ("4", None)


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (0, "vCPUs must be a whole number from 1"),
        (TEST_DRIVER_MAX_VCPUS + 1, f"at most {TEST_DRIVER_MAX_VCPUS} vCPUs"),
        (True, "vCPUs must be a whole number"),
    ],
)
def test_vcpus_outside_what_the_host_allows_are_refused_and_change_nothing(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary, count: int, message: str
) -> None:
    before = _config(target, scratch_domain.uuid)

    with pytest.raises(virt.InvalidArgument, match=message):
        set_vcpus(target, scratch_domain.uuid, count)

    assert _config(target, scratch_domain.uuid) == before


# -- memory --------------------------------------------------------------------------------------


def test_memory_of_a_shut_off_vm_grows_for_next_boot_raising_its_maximum(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    applied = set_memory(target, scratch_domain.uuid, 512)

    assert applied == Applied(live=False, config=True, note=NEXT_BOOT)
    assert _memory_kib(_config(target, scratch_domain.uuid)) == ("524288", "524288")


def test_memory_of_a_running_vm_balloons_down_now_and_for_next_boot(
    target: virt.HostTarget, define_scratch: DefineScratch
) -> None:
    vm = _running(target, define_scratch, memory_mib=256)

    applied = set_memory(target, vm.uuid, 128)

    assert applied == Applied(live=True, config=True, note=NOW_AND_NEXT_BOOT)
    live = virt.get_domain(target, vm.uuid)
    assert (live.memory_kib, live.max_memory_kib) == (131072, 262144)
    assert _memory_kib(_config(target, vm.uuid)) == ("262144", "131072")


def test_memory_above_a_running_vms_maximum_waits_for_next_boot(
    target: virt.HostTarget, define_scratch: DefineScratch
) -> None:
    vm = _running(target, define_scratch, memory_mib=256)

    applied = set_memory(target, vm.uuid, 1024)

    assert applied == Applied(
        live=False,
        config=True,
        note="The VM is running and 1024 MiB exceeds its maximum of 256 MiB: applied at next boot.",
    )
    assert virt.get_domain(target, vm.uuid).memory_kib == 262144
    assert _memory_kib(_config(target, vm.uuid)) == ("1048576", "1048576")


def test_memory_of_zero_is_refused(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    with pytest.raises(virt.InvalidArgument, match="Memory"):
        set_memory(target, scratch_domain.uuid, 0)


# -- devices: what is checked before libvirt, and what the test driver lacks ----------------------


def test_attaching_a_disk_on_a_target_in_use_is_refused(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    with pytest.raises(virt.AlreadyExists, match="already has a disk vda"):
        attach_disk(target, scratch_domain.uuid, DiskSpec(source_file="/images/other.qcow2", target_dev="vda"))


def test_attaching_a_nic_with_a_mac_in_use_is_refused(target: virt.HostTarget, define_scratch: DefineScratch) -> None:
    vm = define_scratch(nics=(NicSpec(network="default", mac="52:54:00:00:00:0a"),))

    with pytest.raises(virt.AlreadyExists, match="52:54:00:00:00:0A"):
        attach_nic(target, vm.uuid, NicSpec(bridge="br0", mac="52:54:00:00:00:0A"))


def test_detaching_a_missing_disk_or_nic_says_so(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    with pytest.raises(virt.NotFound, match=r"The VM has no disk vdz\."):
        detach_disk(target, scratch_domain.uuid, "vdz")
    with pytest.raises(virt.NotFound, match="no network interface with MAC address 52:54:00:00:00:99"):
        detach_nic(target, scratch_domain.uuid, "52:54:00:00:00:99")
    with pytest.raises(virt.InvalidArgument, match="MAC address must look like"):
        detach_nic(target, scratch_domain.uuid, "not-a-mac")


def test_media_can_only_change_in_a_cdrom_drive(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    with pytest.raises(virt.InvalidArgument, match="vda is not a CD-ROM drive"):
        change_media(target, scratch_domain.uuid, "vda", "/isos/tools.iso")
    with pytest.raises(virt.NotFound, match="no CD-ROM drive sdc"):
        change_media(target, scratch_domain.uuid, "sdc", None)


def test_the_test_driver_has_no_hotplug_and_says_so_through_the_adapter(
    target: virt.HostTarget, define_scratch: DefineScratch
) -> None:
    cdrom = DiskSpec(device="cdrom", bus="sata", target_dev="sda")
    vm = define_scratch(disks=(DiskSpec(source_file="/images/a.qcow2"), cdrom))
    calls: list[Callable[[], Applied]] = [
        lambda: attach_disk(target, vm.uuid, DiskSpec(source_file="/images/b.qcow2", target_dev="vdb")),
        lambda: detach_disk(target, vm.uuid, "vda"),
        lambda: change_media(target, vm.uuid, "sda", "/isos/tools.iso"),
        lambda: attach_nic(target, vm.uuid, NicSpec(network="default")),
    ]
    before = _config(target, vm.uuid)

    for call in calls:
        with pytest.raises(virt.Unsupported, match="not supported by the connection driver"):
            call()

    assert _config(target, vm.uuid) == before


# -- resizing ------------------------------------------------------------------------------------


def test_a_running_vms_disk_cannot_shrink(target: virt.HostTarget, define_scratch: DefineScratch) -> None:
    vm = _running(target, define_scratch)
    # The test driver reports every running disk as nearly 1 TiB.
    with pytest.raises(virt.InvalidArgument, match=r"vda holds \d{13} bytes; shrinking it to 1073741824 would destroy"):
        resize_disk(target, vm.uuid, "vda", 2**30)


def test_read_only_media_cannot_be_resized(target: virt.HostTarget, define_scratch: DefineScratch) -> None:
    vm = define_scratch(disks=(DiskSpec(device="cdrom", bus="sata", target_dev="sda", source_file="/isos/a.iso"),))

    with pytest.raises(virt.InvalidArgument, match="sda is read-only or removable media"):
        resize_disk(target, vm.uuid, "sda", 2**30)


def test_a_shut_off_vms_pool_volume_grows_but_never_shrinks(make_node: MakeNode, tmp_path: Path) -> None:
    volume = NodeVolume("web.qcow2", "qcow2", capacity=2**30, allocation=2**20)
    node = make_node(pools=(NodePool("images", "/pool/images", volumes=(volume,)),))
    spec = DomainSpec(
        name="web",
        memory_mib=128,
        vcpus=1,
        domain_type="qemu",
        disks=(
            DiskSpec(source_file="/pool/images/web.qcow2"),
            DiskSpec(source_file="/elsewhere/data.qcow2", target_dev="vdb"),
        ),
    )
    vm = virt.define_domain(node, build_domain_xml(spec))

    with pytest.raises(virt.InvalidArgument, match="vda holds 1073741824 bytes; shrinking it to 1048576"):
        resize_disk(node, vm.uuid, "vda", 2**20)
    with pytest.raises(virt.NotFound, match=r"/elsewhere/data\.qcow2 is not a volume of any storage pool"):
        resize_disk(node, vm.uuid, "vdb", 2**31)
    # Growing reaches virStorageVolResize, which the test driver lacks (the lab grows one for real).
    with pytest.raises(virt.Unsupported, match="virStorageVolResize"):
        resize_disk(node, vm.uuid, "vda", 2**31)


# -- boot order, name, description -----------------------------------------------------------------


def test_boot_order_is_saved_in_the_definition(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    set_boot_order(target, scratch_domain.uuid, ["cdrom", "network", "hd"])

    assert domain_devices(_config(target, scratch_domain.uuid)).boot == ("cdrom", "network", "hd")


def test_bad_boot_order_is_refused(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    with pytest.raises(virt.InvalidArgument, match="only once"):
        set_boot_order(target, scratch_domain.uuid, ["hd", "hd"])


def test_a_shut_off_vm_can_be_renamed(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    new_name = f"renamed-{uuidlib.uuid4().hex[:8]}"

    rename_domain(target, scratch_domain.uuid, new_name)

    assert virt.get_domain(target, scratch_domain.uuid).name == new_name
    assert parse_xml(_config(target, scratch_domain.uuid)).findtext("name") == new_name


def test_a_running_vm_cannot_be_renamed(target: virt.HostTarget, define_scratch: DefineScratch) -> None:
    vm = _running(target, define_scratch)

    with pytest.raises(virt.InvalidOperation, match=r"Shut the VM down before renaming it\."):
        rename_domain(target, vm.uuid, f"other-{uuidlib.uuid4().hex[:8]}")

    assert virt.get_domain(target, vm.uuid).name == vm.name


def test_renaming_to_a_taken_or_bad_name_is_refused(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    with pytest.raises(virt.AlreadyExists, match="named 'test' already exists"):
        rename_domain(target, scratch_domain.uuid, "test")
    with pytest.raises(virt.InvalidArgument, match="Name may use letters"):
        rename_domain(target, scratch_domain.uuid, "bad name")


def test_title_and_description_apply_now_and_for_next_boot(
    target: virt.HostTarget, define_scratch: DefineScratch
) -> None:
    vm = _running(target, define_scratch)

    set_description(target, vm.uuid, description="Line one\nline two", title="Web server")

    for xml in (virt.get_domain_xml(target, vm.uuid), _config(target, vm.uuid)):
        root = parse_xml(xml)
        assert (root.findtext("title"), root.findtext("description")) == ("Web server", "Line one\nline two")

    set_description(target, vm.uuid, description="", title="")

    root = parse_xml(_config(target, vm.uuid))
    assert root.find("title") is None and root.find("description") is None


def test_a_multi_line_title_is_refused(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    with pytest.raises(virt.InvalidArgument, match="Title must be a single line"):
        set_description(target, scratch_domain.uuid, description="", title="a\nb")


# -- the XML editor ------------------------------------------------------------------------------


def test_an_edited_definition_is_saved(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    xml = _config(target, scratch_domain.uuid).replace("<vcpu placement='static'>1</vcpu>", "<vcpu>3</vcpu>")

    summary = redefine_domain_xml(target, scratch_domain.uuid, xml)

    assert (summary.uuid, summary.name, summary.vcpus) == (scratch_domain.uuid, scratch_domain.name, 3)
    assert _vcpu(_config(target, scratch_domain.uuid)) == ("3", None)


def test_a_definition_libvirt_refuses_changes_nothing_and_points_at_the_line(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    before = _config(target, scratch_domain.uuid)
    lines = before.splitlines()
    bad_line = next(i for i, line in enumerate(lines) if "<on_crash>" in line)
    lines.insert(bad_line, "  <flavour>spicy</flavour>")

    with pytest.raises(DefineRefused) as refused:
        redefine_domain_xml(target, scratch_domain.uuid, "\n".join(lines))

    assert refused.value.line == bad_line + 1
    assert "Element domain has extra content: flavour" in refused.value.raw
    assert refused.value.message.startswith("The definition does not match libvirt's schema.")
    assert isinstance(refused.value, virt.InvalidArgument)
    assert _config(target, scratch_domain.uuid) == before


@pytest.mark.parametrize(
    ("edit", "message", "line"),
    [
        (lambda xml, uuid: xml.replace(f"<uuid>{uuid}</uuid>", ""), "must keep the VM's <uuid>", None),
        (lambda xml, uuid: xml.replace(uuid, str(uuidlib.uuid4())), "is not this VM's", 3),
        (lambda xml, uuid: xml.replace("<name>", "<name>x"), "rename it on its own", 2),
        (lambda xml, uuid: xml.replace("</currentMemory>", "</currentMemory"), "not well formed at line 6", 6),
        (lambda _xml, _uuid: "<network><name>n</name></network>", "Expected a <domain>", 1),
    ],
)
def test_an_edit_that_would_change_another_vm_or_is_not_a_domain_is_refused(
    target: virt.HostTarget,
    scratch_domain: virt.DomainSummary,
    edit: Callable[[str, str], str],
    message: str,
    line: int | None,
) -> None:
    before = _config(target, scratch_domain.uuid)

    with pytest.raises(DefineRefused, match=message) as refused:
        redefine_domain_xml(target, scratch_domain.uuid, edit(before, scratch_domain.uuid))

    assert refused.value.line == line
    assert _config(target, scratch_domain.uuid) == before


def test_an_edit_with_entities_is_refused_as_unsafe(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    xml = '<!DOCTYPE d [<!ENTITY a "x">]>' + _config(target, scratch_domain.uuid).replace("<name>", "<name>&a;")

    with pytest.raises(virt.UnsafeXML):
        redefine_domain_xml(target, scratch_domain.uuid, xml)


def test_an_edit_for_an_unknown_vm_is_not_defined(
    target: virt.HostTarget, make_spec: Callable[..., DomainSpec]
) -> None:
    spec = make_spec()
    assert spec.uuid is not None

    with pytest.raises(virt.NotFound):
        redefine_domain_xml(target, spec.uuid, build_domain_xml(spec))

    assert spec.name not in {summary.name for summary in virt.list_domains(target)}
