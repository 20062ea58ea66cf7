"""Golden-file tests for the domain XML builder, and the spec's refusals.

Set KVMWEB_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change, then review the
diff like any other code change.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kvmweb.virt import errors
from kvmweb.virt.xml import (
    DiskSpec,
    DomainSpec,
    NicSpec,
    SerialSpec,
    VncSpec,
    build_domain_xml,
    parse_xml,
)

GOLDEN = Path(__file__).parent / "golden"

TINY_LAB_GUEST = DomainSpec(
    name="kvmweb-lab-tiny",
    uuid="1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    memory_mib=192,
    vcpus=1,
    domain_type="qemu",
    kernel="/var/lib/kvmweb-lab/vmlinuz",
    initrd="/var/lib/kvmweb-lab/initrd.img",
    cmdline="console=tty0 console=ttyS0,115200",
    disks=(DiskSpec(source_file="/var/lib/kvmweb-lab/tiny.qcow2"),),
    serial=SerialSpec(log_file="/var/lib/kvmweb-lab/tiny-serial.log"),
    guest_agent=True,
    graphics=VncSpec(socket="/run/kvmweb-lab/tiny-vnc.sock"),
)

ISO_INSTALL_UEFI = DomainSpec(
    name="install-debian",
    uuid="0f0b7b4e-5f1e-4b44-9d0a-2f6d7c1a9e11",
    memory_mib=2048,
    vcpus=2,
    domain_type="kvm",
    machine="q35",
    firmware="uefi",
    boot=("cdrom", "hd"),
    disks=(
        DiskSpec(
            device="cdrom",
            pool="isos",
            volume="debian-12.iso",
            format="raw",
            target_dev="sda",
            bus="sata",
        ),
        DiskSpec(pool="default", volume="install-debian.qcow2", target_dev="vda"),
    ),
    nics=(NicSpec(network="default", mac="52:54:00:AB:CD:EF"),),
    graphics=VncSpec(listen_address="127.0.0.1"),
    rng=True,
    description="Debian <install> & test",
)

BRIDGED_FIXED_VNC = DomainSpec(
    name="bridged.web_01",
    memory_mib=1024,
    vcpus=4,
    boot=("network", "hd"),
    disks=(DiskSpec(source_file="/srv/images/web01.img", format="raw", bus="scsi", target_dev="sda"),),
    nics=(NicSpec(bridge="br0", model="e1000"),),
    graphics=VncSpec(listen_address="::1", autoport=False, port=5905, share_policy="allow-exclusive"),
    balloon=False,
)

CASES = {
    "tiny_lab_guest.xml": TINY_LAB_GUEST,
    "iso_install_uefi.xml": ISO_INSTALL_UEFI,
    "bridged_fixed_vnc.xml": BRIDGED_FIXED_VNC,
}


@pytest.mark.parametrize("golden_name", sorted(CASES))
def test_built_xml_matches_golden_file(golden_name: str) -> None:
    built = build_domain_xml(CASES[golden_name])
    golden = GOLDEN / golden_name
    if os.environ.get("KVMWEB_UPDATE_GOLDEN") == "1":
        golden.write_text(built, encoding="utf-8")
    assert built == golden.read_text(encoding="utf-8")


def test_tiny_guest_has_agent_channel_serial_log_and_vnc_socket() -> None:
    root = parse_xml(build_domain_xml(TINY_LAB_GUEST))

    assert root.findtext("os/cmdline") == "console=tty0 console=ttyS0,115200"
    assert _find(root, "devices/channel/target").get("name") == "org.qemu.guest_agent.0"
    assert _find(root, "devices/serial/log").attrib == {
        "file": "/var/lib/kvmweb-lab/tiny-serial.log",
        "append": "on",
    }
    assert _find(root, "devices/console/target").attrib == {"type": "serial", "port": "0"}
    graphics = _find(root, "devices/graphics")
    assert graphics.get("sharePolicy") == "force-shared"
    assert _find(graphics, "listen").attrib == {
        "type": "socket",
        "socket": "/run/kvmweb-lab/tiny-vnc.sock",
    }
    assert _find(root, "devices/video/model").get("type") == "vga"


def test_text_with_markup_characters_is_escaped_not_injected() -> None:
    spec = DomainSpec(
        name="escape",
        memory_mib=64,
        vcpus=1,
        description="</description><devices><disk/></devices>",
    )

    root = parse_xml(build_domain_xml(spec))

    assert root.findtext("description") == "</description><devices><disk/></devices>"
    assert root.findall("devices/disk") == []


def test_boot_order_is_ignored_when_booting_a_kernel() -> None:
    root = parse_xml(build_domain_xml(TINY_LAB_GUEST))

    assert root.findall("os/boot") == []
    assert root.findtext("os/kernel") == "/var/lib/kvmweb-lab/vmlinuz"


def test_lists_are_accepted_and_frozen_to_tuples() -> None:
    spec = DomainSpec(name="lists", memory_mib=64, vcpus=1, boot=["cdrom"], disks=[])  # type: ignore[arg-type]

    assert spec.boot == ("cdrom",)
    assert spec.disks == ()
    assert hash(spec)


def _domain(**overrides: object) -> DomainSpec:
    fields: dict[str, object] = {"name": "vm", "memory_mib": 64, "vcpus": 1, **overrides}
    return DomainSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"name": "bad name"}, "Name may use letters"),
        ({"name": "-leading"}, "Name may use letters"),
        ({"name": "x" * 65}, "Name may use letters"),
        ({"name": "ünïcode"}, "Name may use letters"),
        ({"memory_mib": 0}, "Memory (MiB) must be a whole number from 1"),
        ({"memory_mib": 10**9}, "Memory (MiB) must be a whole number"),
        ({"memory_mib": True}, "Memory (MiB) must be a whole number"),
        ({"vcpus": 0}, "vCPUs must be a whole number from 1 to 1024"),
        ({"vcpus": 5000}, "vCPUs must be a whole number from 1 to 1024"),
        ({"uuid": "not-a-uuid"}, "UUID must look like"),
        ({"domain_type": "xen"}, "Domain type must be one of kvm, qemu"),
        ({"arch": "sparc"}, "Architecture must be one of"),
        ({"firmware": "coreboot"}, "Firmware must be one of bios, uefi"),
        ({"boot": ()}, "Choose at least one boot device"),
        ({"boot": ("hd", "hd")}, "Each boot device may appear only once"),
        ({"boot": ("floppy",)}, "Boot device must be one of cdrom, hd, network"),
        ({"initrd": "/boot/initrd"}, "needs a kernel"),
        ({"kernel": "vmlinuz"}, "Kernel must be an absolute path"),
        ({"kernel": "/k", "cmdline": "a\x00b"}, "control character"),
        ({"description": "bell\x07"}, "Description contains a control character"),
        (
            {"disks": (DiskSpec(source_file="/a"), DiskSpec(source_file="/b"))},
            "same target device",
        ),
        (
            {"nics": (NicSpec(network="a", mac="52:54:00:00:00:01"),) * 2},
            "same MAC address",
        ),
    ],
)
def test_invalid_domain_spec_is_refused_with_a_plain_message(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        _domain(**overrides)

    assert fragment in caught.value.message
    assert caught.value.transient is False


@pytest.mark.parametrize(
    ("factory", "fragment"),
    [
        (lambda: DiskSpec(), "needs a source"),
        (lambda: DiskSpec(source_file="/a", pool="p", volume="v"), "not both"),
        (lambda: DiskSpec(pool="p"), "needs both the pool and the volume"),
        (lambda: DiskSpec(source_file="relative.qcow2"), "absolute path"),
        (lambda: DiskSpec(source_file="/a", target_dev="sda"), "does not match bus virtio"),
        (lambda: DiskSpec(device="cdrom", target_dev="vdb"), "CD-ROM cannot sit on the virtio"),
        (lambda: DiskSpec(source_file="/a", format="vmdk"), "Disk format must be one of"),  # type: ignore[arg-type]
        (lambda: NicSpec(), "exactly one of a libvirt network or a host bridge"),
        (lambda: NicSpec(network="a", bridge="b"), "exactly one of"),
        (lambda: NicSpec(bridge="br0", portgroup="pg"), "only applies to a libvirt network"),
        (lambda: NicSpec(network="a", mac="52:54:00:00:00"), "MAC address must look like"),
        (lambda: NicSpec(network="a", mac="01:00:5e:00:00:01"), "multicast"),
        (lambda: NicSpec(network="a", model="ne2k_pci"), "NIC model must be one of"),  # type: ignore[arg-type]
        (lambda: VncSpec(), "exactly one of a unix socket path, a socket libvirt names, or a listen address"),
        (lambda: VncSpec(socket="/s", listen_address="127.0.0.1"), "exactly one of"),
        (lambda: VncSpec(socket="/" + "s" * 120), "longer than 107"),
        (lambda: VncSpec(listen_address="localhost"), "is not an IP address"),
        (lambda: VncSpec(listen_address="127.0.0.1", autoport=False), "VNC port must be"),
        (lambda: VncSpec(listen_address="127.0.0.1", port=5901), "only when autoport is off"),
        (lambda: VncSpec(socket="/s", share_policy="open"), "share policy"),  # type: ignore[arg-type]
        (lambda: SerialSpec(log_file="serial.log"), "absolute path"),
    ],
)
def test_invalid_device_spec_is_refused_with_a_plain_message(factory: object, fragment: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        factory()  # type: ignore[operator]

    assert fragment in caught.value.message


def test_empty_cdrom_drive_is_allowed() -> None:
    root = parse_xml(
        build_domain_xml(_domain(disks=(DiskSpec(device="cdrom", format="raw", target_dev="sda", bus="sata"),)))
    )

    cdrom = _find(root, "devices/disk")
    assert cdrom.find("source") is None
    assert cdrom.find("readonly") is not None


def _find(root: ET.Element, path: str) -> ET.Element:
    found = root.find(path)
    assert found is not None, f"no <{path}> in the XML"
    return found


def test_vnc_on_a_socket_libvirt_names_keeps_force_shared() -> None:
    from kvmweb.virt.xml import VncSpec as Vnc
    from kvmweb.virt.xml import parse_xml

    spec = DomainSpec(name="vnc-auto", memory_mib=64, vcpus=1, graphics=Vnc(auto_socket=True))
    graphics = parse_xml(build_domain_xml(spec)).find("devices/graphics")
    assert graphics is not None and graphics.attrib == {"type": "vnc", "sharePolicy": "force-shared"}
    [listen] = list(graphics)
    assert listen.tag == "listen" and listen.attrib == {"type": "socket"}
