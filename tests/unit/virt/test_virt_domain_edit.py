"""Pure domain XML transforms: cloning, boot order, device listing, media, and locating libvirt's complaints."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from kvmweb import virt
from kvmweb.virt.xml import (
    DiskInfo,
    DiskSpec,
    DomainDevices,
    DomainSpec,
    NicInfo,
    NicSpec,
    SerialSpec,
    VncSpec,
    boot_order_xml,
    build_domain_xml,
    clone_domain_xml,
    disk_element,
    domain_devices,
    error_line,
    interface_element,
    parse_xml,
)
from kvmweb.virt.xml.domain_edit import cdrom_media_xml, find_disk, prepare_edited_xml

SOURCE_UUID = "0b9f3a52-6a43-4a8e-9d43-1f0e5b1d6c11"

# A source guest as libvirt's inactive XML shows it, with everything a clone must not share.
SOURCE_XML = f"""<domain type='kvm'>
  <name>web1</name>
  <uuid>{SOURCE_UUID}</uuid>
  <genid>9a8b7c6d-1111-2222-3333-444455556666</genid>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>2</vcpu>
  <sysinfo type='smbios'>
    <system>
      <entry name='manufacturer'>kvmweb</entry>
      <entry name='uuid'>{SOURCE_UUID}</entry>
    </system>
  </sysinfo>
  <os firmware='efi'>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/web1_VARS.fd</nvram>
    <boot dev='hd'/>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web1.qcow2'/>
      <backingStore/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='raw'/>
      <source pool='data' volume='web1-data.raw'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/isos/debian.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='default' portgroup='web'/>
      <target dev='web1-tap'/>
      <model type='virtio'/>
      <link state='down'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:cd'/>
      <source bridge='br0'/>
      <model type='e1000'/>
    </interface>
    <serial type='pty'>
      <log file='/var/log/libvirt/qemu/web1-serial.log' append='on'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <log file='/var/log/libvirt/qemu/web1-serial.log' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/web1.agent'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <graphics type='vnc' socket='/run/kvmweb/vnc/web1.sock' sharePolicy='force-shared'>
      <listen type='socket' socket='/run/kvmweb/vnc/web1.sock'/>
    </graphics>
    <graphics type='spice' port='5930' tlsPort='5931' autoport='no' websocket='5700'>
      <listen type='address' address='0.0.0.0'/>
    </graphics>
  </devices>
  <seclabel type='dynamic' model='selinux' relabel='yes'>
    <label>system_u:system_r:svirt_t:s0:c1,c2</label>
    <imagelabel>system_u:object_r:svirt_image_t:s0:c1,c2</imagelabel>
  </seclabel>
  <seclabel type='static' model='dac' relabel='yes'>
    <label>+107:+107</label>
  </seclabel>
</domain>
"""

NEW_SOURCES = {
    "/var/lib/libvirt/images/web1.qcow2": ("/var/lib/libvirt/images/web2.qcow2", "qcow2"),
    "data/web1-data.raw": ("/srv/data/web2-data.qcow2", "qcow2"),
}


def _clone(**overrides: object) -> ET.Element:
    arguments: dict[str, object] = {"name": "web2", "disk_sources": NEW_SOURCES, **overrides}
    return parse_xml(clone_domain_xml(SOURCE_XML, **arguments))  # type: ignore[arg-type]


# -- cloning -------------------------------------------------------------------------------------


def test_clone_has_the_new_name_and_no_uuid_for_libvirt_to_make_one() -> None:
    clone = _clone()

    assert clone.findtext("name") == "web2"
    assert clone.find("uuid") is None
    assert SOURCE_UUID not in ET.tostring(clone, encoding="unicode")
    assert clone.find("genid") is not None and clone.findtext("genid") == ""
    assert [entry.get("name") for entry in clone.findall("sysinfo/system/entry")] == ["manufacturer"]


def test_clone_drops_every_mac_and_tap_name() -> None:
    clone = _clone()

    nics = clone.findall("devices/interface")
    assert len(nics) == 2
    assert all(nic.find("mac") is None and nic.find("target") is None for nic in nics)
    assert nics[0].find("source").attrib == {"network": "default", "portgroup": "web"}  # type: ignore[union-attr]


def test_clone_points_disks_at_their_copies_and_keeps_the_shared_iso() -> None:
    devices = domain_devices(clone_domain_xml(SOURCE_XML, name="web2", disk_sources=NEW_SOURCES))

    assert [(d.target_dev, d.source_path, d.source_pool, d.format) for d in devices.disks] == [
        ("vda", "/var/lib/libvirt/images/web2.qcow2", None, "qcow2"),
        ("vdb", "/srv/data/web2-data.qcow2", None, "qcow2"),
        ("sda", "/isos/debian.iso", None, "raw"),
    ]
    clone = _clone()
    first, second = clone.findall("devices/disk")[:2]
    assert first.get("type") == second.get("type") == "file"
    assert first.find("backingStore") is None
    assert [child.tag for child in second] == ["driver", "source", "target"]


def test_clone_gets_fresh_uefi_variables_from_the_same_template() -> None:
    nvram = _clone().find("os/nvram")

    assert nvram is not None
    assert nvram.text is None
    assert nvram.attrib == {"template": "/usr/share/OVMF/OVMF_VARS_4M.fd"}


def test_clone_renames_sockets_and_logs_named_after_the_source() -> None:
    clone = _clone()

    assert {log.get("file") for log in clone.iter("log")} == {"/var/log/libvirt/qemu/web2-serial.log"}
    assert clone.find("devices/graphics/listen").get("socket") == "/run/kvmweb/vnc/web2.sock"  # type: ignore[union-attr]
    # libvirt echoes the listen socket as an attribute its own schema then refuses: it goes.
    assert clone.find("devices/graphics").attrib == {"type": "vnc", "sharePolicy": "force-shared"}  # type: ignore[union-attr]
    channel_source = clone.find("devices/channel/source")
    assert channel_source is not None and channel_source.get("path") == "/var/lib/libvirt/qemu/channel/web2.agent"


def test_clone_lets_libvirt_pick_fixed_console_ports() -> None:
    spice = _clone().findall("devices/graphics")[1]

    assert spice.get("autoport") == "yes"
    assert spice.get("port") is None and spice.get("tlsPort") is None
    assert spice.get("websocket") == "-1"


def test_clone_drops_generated_dynamic_labels_but_keeps_static_ones() -> None:
    dynamic, static = _clone().findall("seclabel")

    assert dynamic.attrib == {"type": "dynamic", "model": "selinux", "relabel": "yes"}
    assert list(dynamic) == []
    assert static.findtext("label") == "+107:+107"


def test_clone_refuses_to_share_a_writable_disk() -> None:
    with pytest.raises(virt.InvalidArgument, match=r"vdb .*writable and would be shared"):
        clone_domain_xml(
            SOURCE_XML, name="web2", disk_sources={k: v for k, v in NEW_SOURCES.items() if "data/" not in k}
        )


def test_clone_refuses_a_source_no_disk_uses() -> None:
    sources = {**NEW_SOURCES, "/nowhere.qcow2": ("/new.qcow2", "qcow2")}

    with pytest.raises(virt.InvalidArgument, match=r"no disk using /nowhere\.qcow2"):
        clone_domain_xml(SOURCE_XML, name="web2", disk_sources=sources)


@pytest.mark.parametrize(
    ("name", "sources", "message"),
    [
        ("web1", NEW_SOURCES, "name other than 'web1'"),
        ("-bad", NEW_SOURCES, "Name may use letters"),
        ("web2", {"/var/lib/libvirt/images/web1.qcow2": ("relative.qcow2", "qcow2")}, "absolute path"),
        ("web2", {"/var/lib/libvirt/images/web1.qcow2": ("/x.qcow2", "qcow2 '")}, "Disk format"),
    ],
)
def test_clone_refuses_bad_arguments_plainly(name: str, sources: dict[str, tuple[str, str]], message: str) -> None:
    with pytest.raises(virt.InvalidArgument, match=message):
        clone_domain_xml(SOURCE_XML, name=name, disk_sources=sources)


def test_clone_of_a_built_guest_round_trips_through_the_builder_output(make_spec: Callable[..., DomainSpec]) -> None:
    spec: DomainSpec = make_spec(
        name="lab-a",
        graphics=VncSpec(socket="/run/vnc/lab-a.sock"),
        serial=SerialSpec(log_file="/var/log/lab-a-serial.log"),
        nics=(NicSpec(network="default", mac="52:54:00:00:00:01"),),
    )
    old = spec.disks[0].source_file or ""

    clone = parse_xml(
        clone_domain_xml(build_domain_xml(spec), name="lab-b", disk_sources={old: ("/c/lab-b.qcow2", "raw")})
    )

    assert clone.findtext("name") == "lab-b"
    assert clone.find("devices/interface/mac") is None
    assert clone.find("devices/graphics/listen").get("socket") == "/run/vnc/lab-b.sock"  # type: ignore[union-attr]
    assert clone.find("devices/serial/log").get("file") == "/var/log/lab-b-serial.log"  # type: ignore[union-attr]
    assert clone.find("devices/disk/driver").get("type") == "raw"  # type: ignore[union-attr]


# -- devices -------------------------------------------------------------------------------------


def test_domain_devices_lists_disks_nics_and_boot_order() -> None:
    devices = domain_devices(SOURCE_XML)

    assert devices == DomainDevices(
        disks=(
            DiskInfo("vda", "disk", "virtio", "/var/lib/libvirt/images/web1.qcow2", None, None, "qcow2", False),
            DiskInfo("vdb", "disk", "virtio", None, "data", "web1-data.raw", "raw", False),
            DiskInfo("sda", "cdrom", "sata", "/isos/debian.iso", None, None, "raw", True),
        ),
        nics=(
            NicInfo("52:54:00:aa:bb:cc", "network", "default", "virtio", "web", "down", target_dev="web1-tap"),
            NicInfo("52:54:00:aa:bb:cd", "bridge", "br0", "e1000", None, "up"),
        ),
        boot=("hd",),
    )
    assert devices.to_dict()["nics"][1] == {
        "mac": "52:54:00:aa:bb:cd",
        "type": "bridge",
        "source": "br0",
        "model": "e1000",
        "portgroup": None,
        "link_state": "up",
        "bandwidth": None,
        "target_dev": None,
    }


def test_domain_devices_reads_per_device_boot_order() -> None:
    xml = """<domain><name>x</name><devices>
      <disk type='file' device='disk'><source file='/a'/><target dev='vda'/><boot order='2'/></disk>
      <disk type='file' device='cdrom'><target dev='sda' bus='sata'/><boot order='1'/></disk>
      <interface type='network'><source network='n'/><boot order='3'/></interface>
    </devices></domain>"""

    devices = domain_devices(xml)

    assert devices.boot == ("cdrom", "hd", "network")
    assert devices.disks[1] == DiskInfo("sda", "cdrom", "sata", None, None, None, None, False)
    assert devices.nics[0] == NicInfo(None, "network", "n", None, None, "up")


def test_domain_devices_refuses_unsafe_xml() -> None:
    with pytest.raises(virt.UnsafeXML):
        domain_devices('<!DOCTYPE d [<!ENTITY a "x">]><domain>&a;</domain>')


def test_public_element_builders_match_the_domain_builder(make_spec: Callable[..., DomainSpec]) -> None:
    disk = DiskSpec(pool="p", volume="v.qcow2", target_dev="vdb")
    nic = NicSpec(bridge="br0", mac="52:54:00:00:00:02")
    built = parse_xml(build_domain_xml(make_spec(disks=(disk,), nics=(nic,))))

    def flat(element: ET.Element) -> str:
        ET.indent(element, space="")
        element.tail = None
        return ET.tostring(element, encoding="unicode").replace("\n", "")

    assert flat(disk_element(disk)) == flat(built.find("devices/disk"))  # type: ignore[arg-type]
    assert flat(interface_element(nic)) == flat(built.find("devices/interface"))  # type: ignore[arg-type]


# -- boot order ----------------------------------------------------------------------------------


def test_boot_order_replaces_os_boot_and_drops_per_device_orders() -> None:
    xml = SOURCE_XML.replace("<target dev='vda' bus='virtio'/>", "<target dev='vda' bus='virtio'/><boot order='1'/>")

    root = parse_xml(boot_order_xml(xml, ["cdrom", "hd", "network"]))

    assert [boot.get("dev") for boot in root.findall("os/boot")] == ["cdrom", "hd", "network"]
    assert [child.tag for child in root.find("os")] == ["type", "loader", "nvram", "boot", "boot", "boot"]  # type: ignore[union-attr]
    assert list(root.iter("boot")) == root.findall("os/boot")
    assert root.find("devices/graphics").get("socket") is None  # type: ignore[union-attr]
    assert domain_devices(ET.tostring(root, encoding="unicode")).boot == ("cdrom", "hd", "network")


@pytest.mark.parametrize(
    ("devices", "message"),
    [([], "at least one"), (["hd", "hd"], "only once"), (["usb"], "Boot device must be one of"), ("hd", "a list")],
)
def test_boot_order_refuses_bad_devices(devices: list[str], message: str) -> None:
    with pytest.raises(virt.InvalidArgument, match=message):
        boot_order_xml(SOURCE_XML, devices)


# -- media and passwords -------------------------------------------------------------------------


def test_cdrom_media_insert_and_eject() -> None:
    drive = find_disk(parse_xml(SOURCE_XML), "sda")
    assert drive is not None

    inserted = parse_xml(cdrom_media_xml(drive, "/isos/tools.iso"))
    ejected = parse_xml(cdrom_media_xml(drive, None))

    assert inserted.find("source").attrib == {"file": "/isos/tools.iso"}  # type: ignore[union-attr]
    assert inserted.find("driver").get("type") == "raw"  # type: ignore[union-attr]
    assert ejected.find("source") is None and ejected.find("target").get("dev") == "sda"  # type: ignore[union-attr]
    assert drive.find("source").get("file") == "/isos/debian.iso"  # type: ignore[union-attr]  # the original is untouched


def test_cdrom_media_refuses_a_hard_disk() -> None:
    disk = find_disk(parse_xml(SOURCE_XML), "vda")
    assert disk is not None

    with pytest.raises(virt.InvalidArgument, match="CD-ROM"):
        cdrom_media_xml(disk, "/isos/tools.iso")


def test_edited_xml_keeps_the_console_password_it_could_not_show() -> None:
    secure = SOURCE_XML.replace("<graphics type='vnc'", "<graphics type='vnc' passwd='s3cret'")

    kept = parse_xml(prepare_edited_xml(SOURCE_XML, secure))

    assert [g.get("passwd") for g in kept.findall("devices/graphics")] == ["s3cret", None]
    assert kept.find("devices/graphics").get("socket") is None  # type: ignore[union-attr]


def test_edited_xml_that_needs_nothing_is_sent_as_typed() -> None:
    plain = SOURCE_XML.replace(" socket='/run/kvmweb/vnc/web1.sock' sharePolicy", " sharePolicy")

    assert prepare_edited_xml(plain, SOURCE_XML) is plain


# -- error_line ----------------------------------------------------------------------------------

EDITED = """<domain type='kvm'>
  <name>web1</name>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/a.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/b.qcow2'/>
      <target dev='vdb' bus='floppybus'/>
    </disk>
    <interface type='network'>
      <source network='default'/>
      <foo/>
    </interface>
  </devices>
</domain>
"""
SCHEMA = (
    "XML document failed to validate against schema: "
    "Unable to validate doc against /usr/share/libvirt/schemas/domain.rng\n"
)


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (SCHEMA + "Element interface has extra content: foo", 19),
        (SCHEMA + "Extra element foo in interleave\nElement domain failed to validate content", 19),
        (SCHEMA + "Invalid attribute bogus for element source\n", 10),
        ("Invalid value for attribute bus in element target: 'floppybus'", 15),
        ("unsupported configuration: unknown disk bus type 'floppybus'", 15),
        ("XML error: invalid vcpus count", 4),
        ("unsupported configuration: maximum vcpus count must be an integer", 4),
        ("internal error: something nobody can place", None),
    ],
)
def test_error_line_finds_what_libvirt_complains_about(message: str, line: int | None) -> None:
    assert error_line(EDITED, message) == line


def test_error_line_of_malformed_xml_is_the_parsers_line() -> None:
    assert error_line("<domain>\n  <name>x</name>\n  <vcpu>\n</domain>\n", "anything") == 4


def test_error_line_gives_up_on_unsafe_xml() -> None:
    assert error_line('<!DOCTYPE d [<!ENTITY a "x">]>\n<domain>&a;</domain>', "'domain'") is None
