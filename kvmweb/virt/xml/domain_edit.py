"""Pure transforms of libvirt domain XML for the hardware editor, the XML editor and cloning.

Nothing here talks to libvirt: every function takes XML text (parsed with the defusedxml helper,
since it comes from libvirt or a user) and returns text or frozen values.
"""

from __future__ import annotations

import copy
import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from xml.parsers import expat

from kvmweb.virt.errors import InvalidArgument, UnsafeXML
from kvmweb.virt.types import _Serializable
from kvmweb.virt.xml.bandwidth import Bandwidth, bandwidth_element, read_bandwidth
from kvmweb.virt.xml.checks import check_absolute_path, check_choice, check_pattern, require
from kvmweb.virt.xml.domain_spec import (
    _NAME,  # the rule DomainSpec applies to names
    _OBJECT_NAME,
    LinkState,
)
from kvmweb.virt.xml.safe import parse

BOOT_DEVICES = ("hd", "cdrom", "network", "fd")
_FORMAT = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")

# Without these, ElementTree writes libvirt's well-known namespaces back as ns0, ns1...
ET.register_namespace("qemu", "http://libvirt.org/schemas/domain/qemu/1.0")
ET.register_namespace("libosinfo", "http://libosinfo.org/xmlns/libvirt/domain/1.0")


@dataclass(frozen=True, slots=True)
class DiskInfo(_Serializable):
    """One ``<disk>``; ``source_path`` is its file or block device, or None (empty CD-ROM, pool volume)."""

    target_dev: str
    device: str
    bus: str | None
    source_path: str | None
    source_pool: str | None
    source_volume: str | None
    format: str | None
    readonly: bool


@dataclass(frozen=True, slots=True)
class NicInfo(_Serializable):
    """One ``<interface>``; ``source`` is the network, bridge or host device it uses.

    ``link_state`` is ``up`` when the XML does not say (libvirt's default).
    """

    mac: str | None
    type: str
    source: str | None
    model: str | None
    portgroup: str | None
    link_state: str
    bandwidth: Bandwidth | None = None  # None: no <bandwidth> (or nothing readable in it)
    target_dev: str | None = None  # the host's tap device while the VM runs (vnet0)


@dataclass(frozen=True, slots=True)
class DomainDevices(_Serializable):
    """The devices a VM page shows, and the boot order (``hd``, ``cdrom``, ``network``, ``fd``)."""

    disks: tuple[DiskInfo, ...]
    nics: tuple[NicInfo, ...]
    boot: tuple[str, ...]


# -- reading -------------------------------------------------------------------------------------


def domain_devices(xml: str) -> DomainDevices:
    """Disks, NICs and boot order of a domain, read from its XML (no libvirt call)."""
    root = _domain_root(xml)
    return DomainDevices(
        disks=tuple(_disk_info(disk) for disk in root.findall("devices/disk")),
        nics=tuple(_nic_info(nic) for nic in root.findall("devices/interface")),
        boot=_boot_order(root),
    )


def _disk_info(disk: ET.Element) -> DiskInfo:
    source = disk.find("source")
    target = disk.find("target")
    driver = disk.find("driver")
    return DiskInfo(
        target_dev=_attr(target, "dev") or "",
        device=disk.get("device", "disk"),
        bus=_attr(target, "bus"),
        source_path=_source_path(source),
        source_pool=_attr(source, "pool"),
        source_volume=_attr(source, "volume"),
        format=_attr(driver, "type"),
        readonly=disk.find("readonly") is not None,
    )


def _nic_info(nic: ET.Element) -> NicInfo:
    source = nic.find("source")
    return NicInfo(
        mac=_attr(nic.find("mac"), "address"),
        type=nic.get("type", ""),
        source=_attr(source, "network") or _attr(source, "bridge") or _attr(source, "dev"),
        model=_attr(nic.find("model"), "type"),
        portgroup=_attr(source, "portgroup"),
        link_state=_attr(nic.find("link"), "state") or "up",
        bandwidth=read_bandwidth(nic.find("bandwidth")),
        target_dev=_attr(nic.find("target"), "dev"),
    )


def _boot_order(root: ET.Element) -> tuple[str, ...]:
    listed = tuple(boot.get("dev", "") for boot in root.findall("os/boot"))
    if listed:
        return listed
    # Without <os><boot>, the order comes from the devices' own <boot order='N'/>.
    ordered: list[tuple[int, str]] = []
    for device in root.findall("devices/*"):
        boot = device.find("boot")
        order = _attr(boot, "order")
        kind = _boot_kind(device)
        if order is not None and order.isdigit() and kind is not None:
            ordered.append((int(order), kind))
    return tuple(kind for _order, kind in sorted(ordered))


def _boot_kind(device: ET.Element) -> str | None:
    if device.tag == "interface":
        return "network"
    if device.tag == "disk":
        return {"cdrom": "cdrom", "floppy": "fd"}.get(device.get("device", "disk"), "hd")
    return None


def _source_path(source: ET.Element | None) -> str | None:
    return _attr(source, "file") or _attr(source, "dev") or _attr(source, "dir")


def _attr(element: ET.Element | None, name: str) -> str | None:
    if element is None:
        return None
    return element.get(name) or None


def find_disk(root: ET.Element, target_dev: str) -> ET.Element | None:
    """The ``<disk>`` whose target is ``target_dev``, in a parsed domain."""
    for disk in root.findall("devices/disk"):
        if _attr(disk.find("target"), "dev") == target_dev:
            return disk
    return None


def find_interface(root: ET.Element, mac: str) -> ET.Element | None:
    """The ``<interface>`` with MAC address ``mac`` (any case), in a parsed domain."""
    for nic in root.findall("devices/interface"):
        address = _attr(nic.find("mac"), "address")
        if address is not None and address.lower() == mac.lower():
            return nic
    return None


def check_domain_name(name: str) -> None:
    rule = "may use letters, digits, '-', '_' and '.' (up to 64, not starting with '-' or '.')"
    check_pattern("Name", name, _NAME, rule)


def check_mac(mac: str) -> None:
    check_pattern("MAC address", mac, _MAC, "must look like 52:54:00:12:34:56")


# -- editing devices -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NicChange:
    """What ``interface_update_xml`` changes on one NIC; None leaves that part as it is.

    ``bandwidth`` with no limits removes them; ``portgroup`` "" goes back to the network's default.
    """

    link: LinkState | None = None
    bandwidth: Bandwidth | None = None
    portgroup: str | None = None

    def __post_init__(self) -> None:
        if self.link is not None:
            check_choice("Link state", self.link, ("up", "down"))
        require(self.bandwidth is None or isinstance(self.bandwidth, Bandwidth), "Bandwidth must be a Bandwidth.")
        if self.portgroup:
            check_pattern("Port group", self.portgroup, _OBJECT_NAME, "is not a valid name")
        require(
            (self.link, self.bandwidth, self.portgroup) != (None, None, None), "Say what to change on the interface."
        )


def interface_update_xml(nic: ET.Element, change: NicChange) -> str:
    """The ``<interface>`` to hand to updateDevice: ``nic`` (from the live or the saved definition) changed.

    Everything else (MAC, model, address, target) stays, since libvirt matches the device by them
    and refuses an update that changes what cannot change.
    """
    require(nic.tag == "interface", f"Expected an <interface>, got <{nic.tag}>.")
    changed = _copy(nic)
    if change.link is not None:
        link = changed.find("link")
        if link is None:
            link = ET.SubElement(changed, "link")
        link.set("state", change.link)
    if change.bandwidth is not None:
        _remove_children(changed, ("bandwidth",))
        if not change.bandwidth.empty:  # no <bandwidth> at all: libvirt clears the limits
            _insert_after(changed, bandwidth_element(change.bandwidth), ("mac", "source", "model", "target"))
    if change.portgroup is not None:
        source = changed.find("source")
        require(
            changed.get("type") == "network" and source is not None and bool(source.get("network")),
            "Only an interface on a libvirt network has port groups.",
        )
        assert source is not None
        if change.portgroup:
            source.set("portgroup", change.portgroup)
        else:
            source.attrib.pop("portgroup", None)
    return ET.tostring(changed, encoding="unicode")


def cdrom_media_xml(disk: ET.Element, source_path: str | None) -> str:
    """The ``<disk>`` to hand to updateDevice: ``disk`` with ``source_path`` inserted, or ejected (None)."""
    require(disk.get("device") == "cdrom", "Only a CD-ROM's media can be changed.")
    changed = _copy(disk)
    for old in changed.findall("source") + changed.findall("backingStore"):
        changed.remove(old)
    if source_path is None:
        # An empty drive has no source; "volume" or "network" without one is not valid XML.
        if changed.get("type") not in ("file", "block"):
            changed.set("type", "file")
        return ET.tostring(changed, encoding="unicode")
    check_absolute_path("CD-ROM image", source_path)
    block = source_path.startswith("/dev/")
    changed.set("type", "block" if block else "file")
    source = ET.Element("source", {"dev" if block else "file": source_path})
    _insert_after(changed, source, ("driver",))
    # Installer and driver images are raw ISO 9660 files.
    driver = changed.find("driver")
    if driver is None:
        driver = ET.Element("driver", name="qemu")
        changed.insert(0, driver)
    driver.set("type", "raw")
    return ET.tostring(changed, encoding="unicode")


def boot_order_xml(xml: str, devices: Sequence[str]) -> str:
    """``xml`` booting from ``devices`` in order, as ``<os><boot dev=…>``.

    Per-device ``<boot order=…>`` elements are removed: libvirt refuses a domain that has both.
    """
    check_boot_devices(devices)
    root = _domain_root(xml)
    os_element = root.find("os")
    if os_element is None:
        os_element = ET.Element("os")
        root.insert(_index_after(root, ("name", "uuid", "title", "description", "metadata", "memory")), os_element)
    old = os_element.findall("boot")
    position = list(os_element).index(old[0]) if old else _index_after(os_element, ("type", "loader", "nvram"))
    for element in old:
        os_element.remove(element)
    for offset, device in enumerate(devices):
        os_element.insert(position + offset, ET.Element("boot", dev=device))
    for device_element in root.findall("devices/*"):
        for boot in device_element.findall("boot"):
            device_element.remove(boot)
    _drop_echoed_socket(root)
    return _serialize(root)


def check_boot_devices(devices: Sequence[str]) -> None:
    require(not isinstance(devices, str), "Boot devices must be a list, such as ['cdrom', 'hd'].")
    require(len(devices) > 0, "Choose at least one boot device.")
    for device in devices:
        check_choice("Boot device", device, BOOT_DEVICES)
    require(len(set(devices)) == len(devices), "Each boot device may appear only once.")


def prepare_edited_xml(edited_xml: str, current_secure_xml: str) -> str:
    """``edited_xml`` made ready to redefine; the same text when it needs nothing.

    Each console password of the current definition is carried over (domain XML shown to users
    never holds one, so an edit would otherwise drop it silently), and the VNC ``socket`` attribute
    libvirt echoes from ``<listen type='socket'>`` is dropped (see ``_drop_echoed_socket``).
    """
    current = {
        graphics.get("type"): graphics.get("passwd")
        for graphics in _domain_root(current_secure_xml).findall("devices/graphics")
        if graphics.get("passwd")
    }
    root = _domain_root(edited_xml)
    changed = _drop_echoed_socket(root)
    for graphics in root.findall("devices/graphics"):
        password = current.get(graphics.get("type"))
        if password is not None and graphics.get("passwd") is None:
            graphics.set("passwd", password)
            changed = True
    return _serialize(root) if changed else edited_xml


def _drop_echoed_socket(root: ET.Element) -> bool:
    """Remove the ``socket`` attribute libvirt copies onto ``<graphics>`` from its socket ``<listen>``.

    libvirt writes both, but its own schema refuses that attribute next to ``sharePolicy``, so
    its XML for such a guest fails a validating define unless the copy goes. Says if it removed any.
    """
    removed = False
    for graphics in root.findall("devices/graphics"):
        socket = graphics.get("socket")
        listens = {listen.get("socket") for listen in graphics.findall("listen") if listen.get("type") == "socket"}
        if socket is not None and socket in listens:
            del graphics.attrib["socket"]
            removed = True
    return removed


# -- cloning -------------------------------------------------------------------------------------


def clone_domain_xml(xml: str, *, name: str, disk_sources: Mapping[str, tuple[str, str]]) -> str:
    """The definition of a copy of a domain, from the source domain's inactive XML.

    ``disk_sources`` maps a disk's old source (its file or block path, or ``pool/volume`` for a pool
    volume disk) to ``(new path, format)``; that disk then uses ``<source file=new path>``. Every
    writable disk must get a new source (two guests writing one image corrupt it): read-only and
    shareable disks, and empty CD-ROMs, may keep theirs. The copy has no UUID and no MAC addresses,
    so libvirt makes new ones, and gets fresh UEFI variables, VNC port, generation ID and
    dynamic security labels; socket and log paths named after the old guest are renamed.
    """
    check_domain_name(name)
    for old, (new_path, disk_format) in disk_sources.items():
        check_absolute_path("New disk path", new_path)
        check_pattern("Disk format", disk_format, _FORMAT, "is not a disk format name")
        require(old != new_path, f"The copy of {old} needs a path of its own.")
    root = _domain_root(xml)
    old_name = (root.findtext("name") or "").strip()
    require(old_name != name, f"The copy needs a name other than {old_name!r}.")
    _set_name(root, name)
    _drop_identity(root)
    _rewrite_disks(root, disk_sources)
    for nic in root.findall("devices/interface"):
        _remove_children(nic, ("mac", "target", "alias"))
    _fresh_nvram(root)
    _fresh_graphics_ports(root)
    _rename_paths(root, old_name, name)
    _drop_generated_labels(root)
    _drop_echoed_socket(root)
    return _serialize(root)


def _set_name(root: ET.Element, name: str) -> None:
    element = root.find("name")
    if element is None:
        element = ET.Element("name")
        root.insert(0, element)
    element.text = name


def _drop_identity(root: ET.Element) -> None:
    root.attrib.pop("id", None)
    _remove_children(root, ("uuid",))
    genid = root.find("genid")
    if genid is not None:
        genid.text = None  # an empty <genid/> asks libvirt for a new one
    # SMBIOS must report the domain's UUID, and libvirt refuses a mismatch.
    for system in root.findall("sysinfo/system"):
        for entry in system.findall("entry"):
            if entry.get("name") == "uuid":
                system.remove(entry)
    for device in root.iter():
        _remove_children(device, ("alias",))


def _rewrite_disks(root: ET.Element, disk_sources: Mapping[str, tuple[str, str]]) -> None:
    unused = set(disk_sources)
    for disk in root.findall("devices/disk"):
        key = _disk_key(disk)
        if key is not None and key in disk_sources:
            unused.discard(key)
            new_path, disk_format = disk_sources[key]
            _point_disk_at(disk, new_path, disk_format)
            continue
        shared = disk.find("readonly") is not None or disk.find("shareable") is not None
        target = _attr(disk.find("target"), "dev") or "?"
        require(
            key is None or shared,
            f"Disk {target} ({key}) is writable and would be shared by both VMs: give its copy a new path.",
        )
    require(not unused, f"The VM has no disk using {', '.join(sorted(unused))}.")


def _disk_key(disk: ET.Element) -> str | None:
    source = disk.find("source")
    if source is None:
        return None
    pool, volume = source.get("pool"), source.get("volume")
    if pool and volume:
        return f"{pool}/{volume}"
    return _source_path(source) or source.get("name")


def _point_disk_at(disk: ET.Element, path: str, disk_format: str) -> None:
    disk.set("type", "file")
    position = list(disk).index(old) if (old := disk.find("source")) is not None else None
    _remove_children(disk, ("source", "backingStore"))
    source = ET.Element("source", file=path)
    if position is None:
        _insert_after(disk, source, ("driver",))
    else:
        disk.insert(position, source)
    driver = disk.find("driver")
    if driver is None:
        driver = ET.Element("driver", name="qemu")
        disk.insert(0, driver)
    driver.set("type", disk_format)


def _fresh_nvram(root: ET.Element) -> None:
    nvram = root.find("os/nvram")
    if nvram is None:
        return
    # Keep the template (which firmware's variables to start from); libvirt names a new file.
    nvram.text = None
    for child in list(nvram):
        nvram.remove(child)
    nvram.attrib.pop("type", None)  # type='file' would need the <source> just removed


def _fresh_graphics_ports(root: ET.Element) -> None:
    for graphics in root.findall("devices/graphics"):
        if graphics.get("autoport") == "no":
            for attribute in ("port", "tlsPort"):
                graphics.attrib.pop(attribute, None)
            graphics.set("autoport", "yes")
        websocket = graphics.get("websocket")
        if websocket is not None and websocket != "-1":
            graphics.set("websocket", "-1")


def _rename_paths(root: ET.Element, old_name: str, new_name: str) -> None:
    if not old_name:
        return
    for element, attribute in _named_paths(root):
        path = element.get(attribute) or ""
        directory, base = posixpath.split(path)
        if old_name in base:
            element.set(attribute, posixpath.join(directory, base.replace(old_name, new_name)))


def _named_paths(root: ET.Element) -> Iterator[tuple[ET.Element, str]]:
    """Host paths a guest owns alone: VNC sockets, char device sockets and files, and their logs."""
    for graphics in root.findall("devices/graphics"):
        yield graphics, "socket"
        for listen in graphics.findall("listen"):
            yield listen, "socket"
    for kind in ("serial", "console", "channel", "parallel"):
        for device in root.findall(f"devices/{kind}"):
            for log in device.findall("log"):
                yield log, "file"
            if device.get("type") in ("file", "unix"):
                for source in device.findall("source"):
                    yield source, "path"


def _drop_generated_labels(root: ET.Element) -> None:
    # A dynamic label is picked by libvirt at start; a stale one copied over would be shared.
    for seclabel in root.iter("seclabel"):
        if seclabel.get("type", "dynamic") == "dynamic":
            _remove_children(seclabel, ("label", "imagelabel"))


# -- locating libvirt's complaints ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    line: int
    tag: str
    attrs: dict[str, str]
    parent: str | None


_ELEMENT_AND_ATTRIBUTE = (
    re.compile(r"Invalid attribute (?P<attr>[\w:.-]+) for element (?P<tag>[\w:.-]+)"),
    re.compile(r"[Ii]nvalid value for attribute (?P<attr>[\w:.-]+) in element (?P<tag>[\w:.-]+)"),
    re.compile(r"[Mm]issing '?(?P<attr>[\w:.-]+)'? attribute (?:in|for) (?:element )?'?(?P<tag>[\w:.-]+)"),
)
_CHILD_OF = re.compile(r"Element (?P<parent>[\w:.-]+) has extra content: (?P<tag>[\w:.-]+)")
_ELEMENT = (
    re.compile(r"Did not expect element (?P<tag>[\w:.-]+)"),
    re.compile(r"Expecting (?:an )?element [\w:.-]+, got (?P<tag>[\w:.-]+)"),
    re.compile(r"Extra element (?P<tag>[\w:.-]+)"),
    re.compile(r"Element (?P<tag>[\w:.-]+) failed to validate"),
)
_QUOTED = re.compile(r"'([^'\n]{1,200})'|\"([^\"\n]{1,200})\"")
_WORD = re.compile(r"[A-Za-z_][\w.-]*")
_NOISE = "Unable to validate doc against"


def error_line(xml: str, message: str) -> int | None:
    """The line of ``xml`` (from 1) that libvirt's ``message`` most likely complains about, or None.

    libvirt reports no positions for schema or semantic errors, but its messages name elements,
    attributes and values ("Element interface has extra content: foo", "Invalid value for attribute
    type in element disk", "unsupported configuration: unknown disk bus 'foo'"); the first thing a
    message names that the document holds wins. XML that does not parse gives the parser's line.
    """
    try:
        parse(xml)
    except UnsafeXML:
        return None
    except InvalidArgument as exc:
        position = getattr(exc.__cause__, "position", None)
        return int(position[0]) if position else None
    nodes, texts = _index(xml)
    # Schema errors start with a line naming the schema file, which says nothing about the XML.
    lines = [line for line in message.splitlines() if _NOISE not in line]
    for line in lines:
        found = _structural(nodes, line)
        if found is not None:
            return found
    return _mentioned(nodes, texts, "\n".join(lines))


def _structural(nodes: list[_Node], line: str) -> int | None:
    for pattern in _ELEMENT_AND_ATTRIBUTE:
        match = pattern.search(line)
        if match:
            tag, attr = match["tag"], match["attr"]
            quoted = _quoted(line)
            having = [n for n in nodes if n.tag == tag and attr in n.attrs]
            for node in having:
                if node.attrs[attr] in quoted:
                    return node.line
            if having:
                return having[0].line
            return _first(nodes, tag)
    match = _CHILD_OF.search(line)
    if match:
        for node in nodes:
            if node.tag == match["tag"] and node.parent == match["parent"]:
                return node.line
        return _first(nodes, match["tag"]) or _first(nodes, match["parent"])
    for pattern in _ELEMENT:
        match = pattern.search(line)
        if match:
            return _first(nodes, match["tag"])
    return None


def _mentioned(nodes: list[_Node], texts: list[tuple[int, str]], message: str) -> int | None:
    # Quoted values first (the most specific), then quoted names, then bare element names.
    for value in _quoted(message):
        for node in nodes:
            if value in node.attrs.values():
                return node.line
        for line, text in texts:
            if text == value:
                return line
    for value in _quoted(message):
        found = _first(nodes, value) or next((n.line for n in nodes if value in n.attrs), None)
        if found is not None:
            return found
    body = message.split(":", 1)[1] if ":" in message else message
    for word in _WORD.findall(body):
        for candidate in (word, word.rstrip("s")):
            if candidate != "domain":
                found = _first(nodes, candidate)
                if found is not None:
                    return found
    return None


def _quoted(text: str) -> list[str]:
    return [single or double for single, double in _QUOTED.findall(text)]


def _first(nodes: list[_Node], tag: str) -> int | None:
    return next((node.line for node in nodes if node.tag == tag), None)


def _index(xml: str) -> tuple[list[_Node], list[tuple[int, str]]]:
    """Every element with its line, and every text with its line (the XML already parsed safely)."""
    # safe.parse accepted the document, so it has no DTD and hence no entities for expat to expand.
    parser = expat.ParserCreate()
    nodes: list[_Node] = []
    texts: list[tuple[int, str]] = []
    stack: list[str] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        nodes.append(_Node(parser.CurrentLineNumber, tag, attrs, stack[-1] if stack else None))
        stack.append(tag)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if data.strip():
            texts.append((parser.CurrentLineNumber, data.strip()))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(xml, True)
    return nodes, texts


# -- helpers -------------------------------------------------------------------------------------


def _domain_root(xml: str) -> ET.Element:
    root = parse(xml)
    require(root.tag == "domain", f"Expected a <domain> definition, got <{root.tag}>.")
    return root


def _serialize(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _copy(element: ET.Element) -> ET.Element:
    return copy.deepcopy(element)


def _remove_children(parent: ET.Element, tags: Sequence[str]) -> None:
    for child in list(parent):
        if child.tag in tags:
            parent.remove(child)


def _index_after(parent: ET.Element, tags: Sequence[str]) -> int:
    children = list(parent)
    positions = [i for i, child in enumerate(children) if child.tag in tags]
    return positions[-1] + 1 if positions else 0


def _insert_after(parent: ET.Element, element: ET.Element, tags: Sequence[str]) -> None:
    parent.insert(_index_after(parent, tags), element)
