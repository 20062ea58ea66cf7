"""Listing, state and lifecycle of domains on the test driver, and the builder's XML round trip."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from kvmweb import virt
from kvmweb.virt.xml import DiskSpec, DomainSpec, SerialSpec, VncSpec, build_domain_xml, parse_xml

DefineScratch = Callable[..., virt.DomainSummary]
MakeSpec = Callable[..., DomainSpec]


GOLDEN = Path(__file__).parent / "golden"


def _by_name(target: virt.HostTarget, name: str) -> virt.DomainSummary:
    [summary] = [summary for summary in virt.list_domains(target) if summary.name == name]
    return summary


def test_list_shows_the_running_test_domain(target: virt.HostTarget) -> None:
    summary = _by_name(target, "test")

    assert summary.uuid == "6695eb01-f6a4-8304-79aa-97f2502e193f"
    assert summary.state == "running"
    assert (summary.vcpus, summary.memory_kib, summary.max_memory_kib) == (2, 2097152, 8388608)
    assert summary.persistent is True
    assert summary.autostart is False
    assert isinstance(summary.id, int)


def test_list_shows_a_defined_domain_as_shut_off(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    listed = _by_name(target, scratch_domain.name)

    assert listed == scratch_domain
    assert listed.to_dict() == {
        "uuid": scratch_domain.uuid,
        "name": scratch_domain.name,
        "state": "shutoff",
        "reason": "unknown",
        "vcpus": 1,
        "memory_kib": 196608,
        "max_memory_kib": 196608,
        "autostart": False,
        "persistent": True,
        "id": None,
    }


def test_list_is_sorted_by_name(target: virt.HostTarget, define_scratch: DefineScratch) -> None:
    define_scratch(name=f"zz-{uuid.uuid4().hex[:8]}")
    define_scratch(name=f"aa-{uuid.uuid4().hex[:8]}")

    names = [summary.name for summary in virt.list_domains(target)]

    assert names == sorted(names)


def test_autostart_shows_in_the_list(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    virt.set_autostart(target, scratch_domain.uuid, enabled=True)

    assert _by_name(target, scratch_domain.name).autostart is True
    assert virt.get_domain(target, scratch_domain.uuid).autostart is True


def test_start_shutdown_and_destroy_change_the_observed_state(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    virt.start_domain(target, scratch_domain.uuid)
    assert virt.domain_state(target, scratch_domain.uuid) == virt.DomainState("running", "booted")
    assert virt.get_domain(target, scratch_domain.uuid).id is not None

    virt.shutdown_domain(target, scratch_domain.uuid)
    assert virt.domain_state(target, scratch_domain.uuid) == virt.DomainState("shutoff", "shutdown")

    virt.start_domain(target, scratch_domain.uuid)
    virt.destroy_domain(target, scratch_domain.uuid)
    assert virt.domain_state(target, scratch_domain.uuid) == virt.DomainState("shutoff", "destroyed")


def test_undefine_removes_the_domain(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    virt.undefine_domain(target, scratch_domain.uuid)

    with pytest.raises(virt.NotFound):
        virt.domain_state(target, scratch_domain.uuid)
    assert scratch_domain.name not in {summary.name for summary in virt.list_domains(target)}


def test_undefining_a_running_domain_leaves_it_running_but_transient(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary
) -> None:
    virt.start_domain(target, scratch_domain.uuid)

    virt.undefine_domain(target, scratch_domain.uuid)

    listed = _by_name(target, scratch_domain.name)
    assert (listed.state, listed.persistent) == ("running", False)


def test_redefining_a_known_uuid_updates_it(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary, make_spec: MakeSpec
) -> None:
    bigger = make_spec(name=scratch_domain.name, uuid=scratch_domain.uuid, memory_mib=512, vcpus=2)

    updated = virt.define_domain(target, build_domain_xml(bigger))

    assert (updated.uuid, updated.memory_kib, updated.vcpus) == (scratch_domain.uuid, 524288, 2)


def test_uuid_in_any_case_finds_the_domain(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    assert virt.get_domain(target, scratch_domain.uuid.upper()) == scratch_domain


def test_malformed_uuid_is_invalid_argument(target: virt.HostTarget) -> None:
    with pytest.raises(virt.InvalidArgument, match="is not a virtual machine UUID"):
        virt.domain_state(target, "../../etc")


def test_define_refuses_entities_before_libvirt_sees_them(target: virt.HostTarget) -> None:
    payload = "<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/hostname'>]><domain type='qemu'><name>&x;</name></domain>"

    with pytest.raises(virt.UnsafeXML):
        virt.define_domain(target, payload)


def test_define_refuses_other_objects(target: virt.HostTarget) -> None:
    with pytest.raises(virt.InvalidArgument, match="Expected a <domain> definition, got <network>"):
        virt.define_domain(target, "<network><name>default</name></network>")


def test_tiny_lab_guest_round_trips_through_libvirt(
    target: virt.HostTarget, define_scratch: DefineScratch, make_spec: MakeSpec
) -> None:
    spec = make_spec(
        kernel="/var/lib/kvmweb-lab/vmlinuz",
        initrd="/var/lib/kvmweb-lab/initrd.img",
        cmdline="console=tty0 console=ttyS0,115200",
        disks=(DiskSpec(source_file="/var/lib/kvmweb-lab/tiny.qcow2"),),
        serial=SerialSpec(log_file="/var/lib/kvmweb-lab/tiny-serial.log"),
        guest_agent=True,
        graphics=VncSpec(socket="/run/kvmweb-lab/tiny-vnc.sock"),
    )
    summary = define_scratch(spec=spec)

    back = parse_xml(virt.get_domain_xml(target, summary.uuid, inactive=True))

    assert back.get("type") == "qemu"
    assert (back.findtext("name"), back.findtext("uuid")) == (spec.name, spec.uuid)
    assert back.findtext("memory") == "196608"
    assert back.findtext("vcpu") == "1"
    assert [back.findtext(f"os/{tag}") for tag in ("kernel", "initrd", "cmdline")] == [
        "/var/lib/kvmweb-lab/vmlinuz",
        "/var/lib/kvmweb-lab/initrd.img",
        "console=tty0 console=ttyS0,115200",
    ]
    disk = _find(back, "devices/disk")
    assert _find(disk, "driver").get("type") == "qcow2"
    assert _find(disk, "source").get("file") == "/var/lib/kvmweb-lab/tiny.qcow2"
    assert _find(disk, "target").attrib == {"dev": "vda", "bus": "virtio"}
    assert _find(back, "devices/serial/log").attrib == {"file": "/var/lib/kvmweb-lab/tiny-serial.log", "append": "on"}
    assert _find(back, "devices/channel/target").get("name") == "org.qemu.guest_agent.0"
    graphics = _find(back, "devices/graphics")
    assert graphics.get("socket") == "/run/kvmweb-lab/tiny-vnc.sock"
    assert graphics.get("sharePolicy") == "force-shared"


@pytest.mark.parametrize("golden", sorted(path.name for path in GOLDEN.glob("*.xml")))
def test_golden_xml_passes_libvirts_schema_check(target: virt.HostTarget, golden: str) -> None:
    xml = (GOLDEN / golden).read_text(encoding="utf-8")

    summary = virt.define_domain(target, xml)
    try:
        assert summary.name == parse_xml(xml).findtext("name")
        assert summary.state == "shutoff"
    finally:
        virt.undefine_domain(target, summary.uuid)


def _find(root: ET.Element, path: str) -> ET.Element:
    found = root.find(path)
    assert found is not None, f"no <{path}> in the XML"
    return found
