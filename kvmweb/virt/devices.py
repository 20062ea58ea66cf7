"""Editing a domain's hardware and definition: vCPUs, memory, disks, media, NICs, boot order, XML.

A change goes to the running guest (live) when the domain is active and the change can be made
hot, and to the persistent definition (config, used from the next boot) when the domain is
persistent. ``Applied`` says which happened, in a sentence for the user.

Definitions read here for a redefine ask libvirt for secrets (``VIR_DOMAIN_XML_SECURE``), so that
a console password survives the round trip; that XML never leaves this module.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import libvirt

from kvmweb.virt import lookup
from kvmweb.virt.connection import Connection, connect
from kvmweb.virt.domains import get_domain
from kvmweb.virt.errors import (
    AccessDenied,
    AlreadyExists,
    HostUnreachable,
    InvalidArgument,
    InvalidOperation,
    NotFound,
    OperationTimeout,
    VirtError,
    translated,
)
from kvmweb.virt.guest_vcpus import online_guest_vcpus
from kvmweb.virt.target import HostTarget
from kvmweb.virt.types import DomainSummary, _Serializable
from kvmweb.virt.units import element_kib
from kvmweb.virt.xml.checks import check_int, check_text, require
from kvmweb.virt.xml.domain_edit import (
    NicChange,
    boot_order_xml,
    cdrom_media_xml,
    check_boot_devices,
    check_domain_name,
    check_mac,
    error_line,
    find_disk,
    find_interface,
    interface_update_xml,
    prepare_edited_xml,
)
from kvmweb.virt.xml.domain_spec import MAX_MEMORY_MIB, MAX_VCPUS, DiskSpec, NicSpec
from kvmweb.virt.xml.domain_xml import GUEST_AGENT_CHANNEL, disk_element, interface_element
from kvmweb.virt.xml.safe import parse

Domain = Any  # a libvirt.virDomain; it never leaves this module

_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
_INACTIVE = libvirt.VIR_DOMAIN_XML_INACTIVE
_SECURE = libvirt.VIR_DOMAIN_XML_SECURE
# QEMU cannot plug a drive into a running guest's SATA or IDE controller.
_COLD_PLUG_BUSES = ("sata", "ide")
_SECTOR = 512

NOW_AND_NEXT_BOOT = "Applied now and kept for next boot."
NOW_ONLY = "Applied now; the VM has no persistent definition, so it is lost when the VM stops."
NEXT_BOOT = "Saved; the VM is shut off, so it takes effect when it next starts."


@dataclass(frozen=True, slots=True)
class Applied(_Serializable):
    """Where a change took effect: the running guest (``live``), the next boot (``config``)."""

    live: bool
    config: bool
    note: str


class DefineRefused(InvalidArgument):
    """libvirt (or kvmweb's checks) refused an edited definition; nothing was changed.

    ``line`` is the line of the submitted XML the complaint most likely concerns (from 1), or None;
    ``raw`` is libvirt's own message.
    """

    def __init__(self, message: str, *, code: int | None = None, raw: str = "", line: int | None = None) -> None:
        super().__init__(message, code=code, raw=raw)
        self.line = line


# -- vCPUs and memory ----------------------------------------------------------------------------


def set_vcpus(target: HostTarget, uuid: str, count: int) -> Applied:
    """Give the VM ``count`` vCPUs: hot when it runs and ``count`` fits its maximum, else next boot.

    The persistent maximum is raised first when ``count`` is above it. vCPUs plugged into a running
    guest are offered to its guest agent to bring online (best effort; the note says how it went).
    """
    check_int("vCPUs", count, 1, MAX_VCPUS)
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        limit = _vcpu_limit(conn, dom)
        require(count <= limit, f"This host allows at most {limit} vCPUs for this VM; {count} is too many.")
        live, config = _scope(dom)
        if config and count > int(dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM | _CONFIG)):
            dom.setVcpusFlags(count, libvirt.VIR_DOMAIN_VCPU_MAXIMUM | _CONFIG)
        if not live:
            dom.setVcpusFlags(count, _CONFIG)
            return Applied(live=False, config=True, note=NEXT_BOOT)
        live_max = int(dom.vcpusFlags(libvirt.VIR_DOMAIN_VCPU_MAXIMUM | _LIVE))
        if count <= live_max:
            return _set_live_vcpus(dom, count, config)
        over = f"The VM is running and {count} vCPUs exceeds its maximum of {live_max}"
        if not config:
            raise InvalidOperation(f"{over}, and it has no persistent definition to change for next boot.")
        dom.setVcpusFlags(count, _CONFIG)
        return Applied(live=False, config=True, note=f"{over}: applied at next boot.")


def set_memory(target: HostTarget, uuid: str, mib: int) -> Applied:
    """Give the VM ``mib`` MiB: ballooned now when it runs and fits its maximum, else next boot.

    The persistent maximum memory is raised first when ``mib`` is above it.
    """
    check_int("Memory (MiB)", mib, 1, MAX_MEMORY_MIB)
    kib = mib * 1024
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        live, config = _scope(dom)
        if config and kib > _config_max_memory_kib(dom):
            dom.setMemoryFlags(kib, libvirt.VIR_DOMAIN_MEM_MAXIMUM | _CONFIG)
        if not live:
            dom.setMemoryFlags(kib, _CONFIG)
            return Applied(live=False, config=True, note=NEXT_BOOT)
        live_max_kib = int(dom.maxMemory())
        if kib <= live_max_kib:
            # Two calls: some drivers (the test driver) take only one of LIVE and CONFIG at a time.
            dom.setMemoryFlags(kib, _LIVE)
            if config:
                dom.setMemoryFlags(kib, _CONFIG)
            return _now(config)
        over = f"The VM is running and {mib} MiB exceeds its maximum of {live_max_kib // 1024} MiB"
        if not config:
            raise InvalidOperation(f"{over}, and it has no persistent definition to change for next boot.")
        dom.setMemoryFlags(kib, _CONFIG)
        return Applied(live=False, config=True, note=f"{over}: applied at next boot.")


def _set_live_vcpus(dom: Domain, count: int, config: bool) -> Applied:
    """Change the running guest's vCPUs now; those plugged in are also offered to its agent to bring online."""
    before = _online_vcpu_ids(dom)
    dom.setVcpusFlags(count, _LIVE | (_CONFIG if config else 0))
    plugged = sorted(_online_vcpu_ids(dom) - before)
    applied = _now(config)
    if not plugged:
        return applied
    return replace(applied, note=f"{applied.note} {online_guest_vcpus(dom, plugged)}")


def _online_vcpu_ids(dom: Domain) -> set[int]:
    """The ids of the vCPUs the hypervisor runs for the guest (a hot-plug adds to them)."""
    return {int(vcpu[0]) for vcpu in dom.vcpus()[0]}


def _vcpu_limit(conn: Connection, dom: Domain) -> int:
    """The most vCPUs the host's hypervisor gives a guest of this type and machine."""
    root = parse(dom.XMLDesc(_INACTIVE))
    virt_type = root.get("type")
    os_type = root.find("os/type")
    arch = None if os_type is None else os_type.get("arch")
    machine = None if os_type is None else os_type.get("machine")
    emulator = root.findtext("devices/emulator")
    try:
        with translated():
            caps = parse(conn.getDomainCapabilities(emulator, arch, machine, virt_type, 0))
        vcpu = caps.find("vcpu")
        if vcpu is not None and (vcpu.get("max") or "").isdigit():
            return min(int(vcpu.get("max") or 0), MAX_VCPUS)
    except (HostUnreachable, OperationTimeout):
        raise
    except VirtError:
        pass  # drivers without domain capabilities (the test driver) still know a per-type limit
    return min(int(conn.getMaxVcpus(virt_type)), MAX_VCPUS)


def _config_max_memory_kib(dom: Domain) -> int:
    kib = element_kib(parse(dom.XMLDesc(_INACTIVE)).find("memory"))
    return 0 if kib is None else kib


# -- disks ---------------------------------------------------------------------------------------


def attach_disk(target: HostTarget, uuid: str, disk: DiskSpec) -> Applied:
    """Add a disk (or CD-ROM drive): plugged in now when the VM runs, and kept for next boot.

    SATA and IDE drives cannot be plugged into a running guest; they are added for next boot.
    """
    require(isinstance(disk, DiskSpec), "A disk must be a DiskSpec.")
    device_xml = ET.tostring(disk_element(disk), encoding="unicode")
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        live, config = _scope(dom)
        for root in _definitions(dom, live=live, config=config):
            if find_disk(root, disk.target_dev) is not None:
                raise AlreadyExists(f"The VM already has a disk {disk.target_dev}: pick another target.")
        if live and disk.bus in _COLD_PLUG_BUSES:
            if not config:
                raise InvalidOperation(f"A {disk.bus} drive cannot be added to a running VM.")
            dom.attachDeviceFlags(device_xml, _CONFIG)
            note = f"A {disk.bus} drive cannot be plugged into a running VM: added for next boot."
            return Applied(live=False, config=True, note=note)
        dom.attachDeviceFlags(device_xml, _flags(live, config))
        return _applied(live, config)


def detach_disk(target: HostTarget, uuid: str, target_dev: str) -> Applied:
    """Remove the disk ``target_dev`` (its image is kept): unplugged now when the VM runs, and for good.

    A running guest is asked to release the disk; if it has not yet let go when this returns, the
    note says so and the disk disappears once it does.
    """
    check_text("Disk target", target_dev, max_length=32)
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        live, config = _scope(dom)
        where = _locate(dom, live=live, config=config, find=lambda root: find_disk(root, target_dev))
        if where is None:
            raise NotFound(f"The VM has no disk {target_dev}.")
        element, in_live, in_config = where
        dom.detachDeviceFlags(ET.tostring(element, encoding="unicode"), _flags(in_live, in_config))
        if in_live and find_disk(parse(dom.XMLDesc(0)), target_dev) is not None:
            note = f"The guest was asked to release {target_dev}; it goes once the guest lets go of it."
            return Applied(live=True, config=in_config, note=note)
        return _applied(in_live, in_config)


def resize_disk(target: HostTarget, uuid: str, target_dev: str, capacity_bytes: int) -> Applied:
    """Grow the disk ``target_dev`` to ``capacity_bytes`` (rounded up to whole 512-byte sectors).

    A running guest's disk grows at once through QEMU; a shut-off guest's image must be a volume
    of one of the host's storage pools. Shrinking is refused: it destroys the data at the end.
    """
    check_text("Disk target", target_dev, max_length=32)
    check_int("Disk size (bytes)", capacity_bytes, 1, 2**63 - 1)
    wanted = -(-capacity_bytes // _SECTOR) * _SECTOR
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        live = bool(dom.isActive())
        root = parse(dom.XMLDesc(0 if live else _INACTIVE))
        disk = find_disk(root, target_dev)
        if disk is None:
            raise NotFound(f"The VM has no disk {target_dev}.")
        require(
            disk.get("device", "disk") == "disk" and disk.find("readonly") is None,
            f"{target_dev} is read-only or removable media, which cannot be resized.",
        )
        if live:
            current = int(dom.blockInfo(target_dev)[0])
            _require_growth(target_dev, current, wanted)
            if current != wanted:
                dom.blockResize(target_dev, wanted, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            return Applied(live=True, config=True, note="Grown now; the guest sees the larger disk at once.")
        volume = _source_volume(conn, disk, target_dev)
        current = int(volume.info()[1])
        _require_growth(target_dev, current, wanted)
        if current != wanted:
            volume.resize(wanted, 0)
        return Applied(live=False, config=True, note="Grown; the VM sees the larger disk when it next starts.")


def _require_growth(target_dev: str, current: int, wanted: int) -> None:
    require(
        wanted >= current,
        f"{target_dev} holds {current} bytes; shrinking it to {wanted} would destroy data, so only growing is allowed.",
    )


def _source_volume(conn: Connection, disk: ET.Element, target_dev: str) -> Any:
    source = disk.find("source")
    pool = None if source is None else source.get("pool")
    volume = None if source is None else source.get("volume")
    if pool and volume:
        return conn.storagePoolLookupByName(pool).storageVolLookupByName(volume)
    path = None if source is None else (source.get("file") or source.get("dev"))
    if not path:
        raise NotFound(f"{target_dev} has no image to resize.")
    try:
        with translated():
            return conn.storageVolLookupByPath(path)
    except NotFound:
        raise NotFound(
            f"{path} is not a volume of any storage pool on this host, "
            f"so {target_dev} can only be resized while the VM runs."
        ) from None


def change_media(target: HostTarget, uuid: str, target_dev: str, source_path: str | None) -> Applied:
    """Insert the image ``source_path`` into the CD-ROM drive ``target_dev``, or eject it (None).

    A running guest's tray is opened even if the guest locked it.
    """
    check_text("CD-ROM target", target_dev, max_length=32)
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        live, config = _scope(dom)
        root = parse(dom.XMLDesc(0 if live else _INACTIVE))
        disk = find_disk(root, target_dev)
        if disk is None:
            raise NotFound(f"The VM has no CD-ROM drive {target_dev}.")
        require(disk.get("device") == "cdrom", f"{target_dev} is not a CD-ROM drive, so it has no media to change.")
        flags = _flags(live, config) | (libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE if live else 0)
        dom.updateDeviceFlags(cdrom_media_xml(disk, source_path), flags)
        return _applied(live, config)


# -- network interfaces --------------------------------------------------------------------------


def attach_nic(target: HostTarget, uuid: str, nic: NicSpec) -> Applied:
    """Add a network interface: plugged in now when the VM runs, and kept for next boot.

    Without a MAC address libvirt makes one (the same for the running guest and the definition).
    """
    require(isinstance(nic, NicSpec), "A network interface must be a NicSpec.")
    device_xml = ET.tostring(interface_element(nic), encoding="unicode")
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        live, config = _scope(dom)
        if nic.mac is not None:
            for root in _definitions(dom, live=live, config=config):
                if find_interface(root, nic.mac) is not None:
                    raise AlreadyExists(f"The VM already has a network interface with MAC address {nic.mac}.")
        dom.attachDeviceFlags(device_xml, _flags(live, config))
        return _applied(live, config)


def detach_nic(target: HostTarget, uuid: str, mac: str) -> Applied:
    """Remove the network interface with MAC address ``mac``, now when the VM runs, and for good."""
    check_mac(mac)
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        live, config = _scope(dom)
        where = _locate(dom, live=live, config=config, find=lambda root: find_interface(root, mac))
        if where is None:
            raise NotFound(f"The VM has no network interface with MAC address {mac}.")
        element, in_live, in_config = where
        dom.detachDeviceFlags(ET.tostring(element, encoding="unicode"), _flags(in_live, in_config))
        if in_live and find_interface(parse(dom.XMLDesc(0)), mac) is not None:
            note = f"The guest was asked to release the interface {mac}; it goes once the guest lets go of it."
            return Applied(live=True, config=in_config, note=note)
        return _applied(in_live, in_config)


def update_nic(target: HostTarget, uuid: str, mac: str, change: NicChange) -> Applied:
    """Change a NIC's link state, bandwidth or port group: on the running guest where libvirt can, and for good.

    The running guest and the definition are updated separately (each from its own XML, as
    ``virsh domif-setlink`` does). When libvirt cannot make the change on the running guest (a port
    group move some network types refuse), it is kept for next boot and the note says so.
    """
    check_mac(mac)
    require(isinstance(change, NicChange), "A NIC change must be a NicChange.")
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        live, config = _scope(dom)
        in_live = find_interface(parse(dom.XMLDesc(0)), mac) if live else None
        in_config = find_interface(parse(dom.XMLDesc(_INACTIVE)), mac) if config else None
        if in_live is None and in_config is None:
            raise NotFound(f"The VM has no network interface with MAC address {mac}.")
        refused: VirtError | None = None
        if in_live is not None:
            try:
                with translated():
                    dom.updateDeviceFlags(interface_update_xml(in_live, change), _LIVE)
            except (HostUnreachable, OperationTimeout, AccessDenied):
                raise
            except VirtError as exc:
                if in_config is None:
                    raise
                refused = exc
        if in_config is not None:
            dom.updateDeviceFlags(interface_update_xml(in_config, change), _CONFIG)
        if refused is not None:
            note = f"libvirt could not change it on the running guest ({refused.message}): applied at next boot."
            return Applied(live=False, config=True, note=note)
        if in_live is not None:
            return _now(in_config is not None)
        if live:  # a NIC added for next boot only: the running guest does not have it yet
            return Applied(
                live=False, config=True, note="The running guest does not have this NIC yet: saved for its next boot."
            )
        return _applied(False, True)


@dataclass(frozen=True, slots=True)
class IpAddress(_Serializable):
    type: str  # ipv4 or ipv6
    address: str
    prefix: int | None


@dataclass(frozen=True, slots=True)
class NicAddresses(_Serializable):
    """The addresses one NIC (by MAC) has now, and who said so: ``lease`` (libvirt's DHCP) or ``agent``."""

    mac: str
    name: str  # the guest's name for it (eth0) from the agent, the host's tap (vnet0) from a lease
    source: str
    addresses: tuple[IpAddress, ...]


_ADDRESS_SOURCES = (
    ("agent", libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT),
    ("lease", libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE),
)


def get_interface_addresses(target: HostTarget, uuids: Sequence[str]) -> dict[str, tuple[NicAddresses, ...]]:
    """The IP addresses of each running VM's NICs, by VM UUID (one connection for all of them).

    The guest agent is asked only when the running definition says it is connected (it knows
    static and IPv6 addresses too); otherwise, and for NICs it does not report, libvirt's DHCP
    leases answer. Only the VM's own NICs count (not the guest's loopback). A VM that is gone or
    not running is left out; one whose agent or leases cannot be read has no entry for them.
    """
    found: dict[str, tuple[NicAddresses, ...]] = {}
    with connect(target) as conn:
        for uuid in uuids:
            try:
                with translated():
                    dom = lookup.domain(conn, uuid)
                    if not dom.isActive():
                        continue
                    root = parse(dom.XMLDesc(0))
            except (HostUnreachable, OperationTimeout):
                raise
            except VirtError:
                continue  # gone since the caller listed it
            found[lookup.canonical_uuid(uuid, "virtual machine")] = _domain_addresses(dom, root)
    return found


def _domain_addresses(dom: Domain, root: ET.Element) -> tuple[NicAddresses, ...]:
    macs = [
        mac.lower()
        for mac in (_attr_of(nic.find("mac"), "address") for nic in root.findall("devices/interface"))
        if mac
    ]
    agent = any(
        channel.get("name") == GUEST_AGENT_CHANNEL and channel.get("state") == "connected"
        for channel in root.findall("devices/channel/target")
    )
    by_mac: dict[str, NicAddresses] = {}
    for source, flag in _ADDRESS_SOURCES:
        if source == "agent" and not agent:
            continue
        try:
            with translated():
                reported = dom.interfaceAddresses(flag, 0) or {}
        except (HostUnreachable, OperationTimeout):
            raise
        except VirtError:
            continue  # no agent after all, or no leases to read: the other source may answer
        for name, entry in sorted(reported.items()):
            mac = str((entry or {}).get("hwaddr") or "").lower()
            addresses = tuple(_ip(item) for item in (entry or {}).get("addrs") or ())
            if mac in macs and mac not in by_mac and addresses:
                by_mac[mac] = NicAddresses(mac=mac, name=str(name), source=source, addresses=addresses)
    return tuple(by_mac[mac] for mac in macs if mac in by_mac)


def _ip(item: dict[str, Any]) -> IpAddress:
    kind = "ipv6" if item.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV6 else "ipv4"
    prefix = item.get("prefix")
    return IpAddress(type=kind, address=str(item.get("addr") or ""), prefix=int(prefix) if prefix is not None else None)


def _attr_of(element: ET.Element | None, name: str) -> str | None:
    return None if element is None else element.get(name)


# -- the definition ------------------------------------------------------------------------------


def set_boot_order(target: HostTarget, uuid: str, devices: Sequence[str]) -> None:
    """Boot from ``devices`` (``hd``, ``cdrom``, ``network``, ``fd``) in order, from the next boot on."""
    check_boot_devices(devices)
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        require(bool(dom.isPersistent()), "The VM has no persistent definition, so its boot order cannot be saved.")
        xml = boot_order_xml(dom.XMLDesc(_INACTIVE | _SECURE), devices)
        conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)


def rename_domain(target: HostTarget, uuid: str, new_name: str) -> None:
    """Rename a shut-off VM (libvirt cannot rename a running one)."""
    check_domain_name(new_name)
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        if dom.isActive():
            raise InvalidOperation("Shut the VM down before renaming it.")
        if dom.name() == new_name:
            return
        if _name_taken(conn, new_name):
            raise AlreadyExists(f"A virtual machine named {new_name!r} already exists on this host.")
        dom.rename(new_name, 0)


def set_description(target: HostTarget, uuid: str, *, description: str, title: str) -> None:
    """Set the VM's title (one line) and description; an empty string removes either."""
    check_text("Title", title, max_length=256)
    check_text("Description", description, one_line=False)
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        live, config = _scope(dom)
        flags = _flags(live, config)
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, description or None, None, None, flags)
        dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_TITLE, title or None, None, None, flags)


def redefine_domain_xml(target: HostTarget, uuid: str, xml: str) -> DomainSummary:
    """Replace the VM's persistent definition with ``xml`` (the XML editor); it takes effect at next boot.

    The XML must be a ``<domain>`` with this VM's ``<uuid>`` and name (renaming is
    ``rename_domain``). Console passwords of the current definition are kept, since the XML users
    see never holds them. Anything refused raises ``DefineRefused`` and changes nothing.
    """
    root = _parse_submitted(xml)
    wanted = lookup.canonical_uuid(uuid, "virtual machine")
    uuid_element = root.find("uuid")
    if uuid_element is None or not (uuid_element.text or "").strip():
        raise DefineRefused("The XML must keep the VM's <uuid>: a definition without one would be a new VM.")
    if _canonical(uuid_element.text or "") != wanted:
        raise DefineRefused(
            f"The XML's <uuid> is not this VM's ({wanted}): changing it would define another VM.",
            line=_line_of(xml, "uuid"),
        )
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        name = (root.findtext("name") or "").strip()
        if name != dom.name():
            raise DefineRefused(
                f"The XML renames the VM to {name!r}; rename it on its own instead (only while it is shut off).",
                line=_line_of(xml, "name"),
            )
        submitted = prepare_edited_xml(xml, dom.XMLDesc(_INACTIVE | _SECURE))
        try:
            with translated():
                conn.defineXMLFlags(submitted, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        except (HostUnreachable, OperationTimeout, AccessDenied):
            raise
        except VirtError as exc:
            raise DefineRefused(exc.message, code=exc.code, raw=exc.raw, line=error_line(xml, exc.raw)) from exc
    return get_domain(target, wanted)


def _parse_submitted(xml: str) -> ET.Element:
    require(isinstance(xml, str), "The definition must be text.")
    try:
        root = parse(xml)
    except InvalidArgument as exc:
        if type(exc) is not InvalidArgument:
            raise  # UnsafeXML: it has no line to point at, and keeps its own class
        raise DefineRefused(exc.message, raw=exc.raw, line=error_line(xml, exc.raw)) from exc
    if root.tag != "domain":
        raise DefineRefused(f"Expected a <domain> definition, got <{root.tag}>.", line=1)
    return root


def _line_of(xml: str, tag: str) -> int | None:
    # A quoted element name is what error_line looks for when nothing more specific matches.
    return error_line(xml, f"'{tag}'")


def _canonical(value: str) -> str | None:
    try:
        return lookup.canonical_uuid(value.strip(), "virtual machine")
    except InvalidArgument:
        return None


def _name_taken(conn: Connection, name: str) -> bool:
    try:
        with translated():
            conn.lookupByName(name)
    except NotFound:
        return False
    return True


# -- helpers -------------------------------------------------------------------------------------


def _scope(dom: Domain) -> tuple[bool, bool]:
    """(live, config): whether the domain runs (or is paused) and whether it has a definition."""
    return bool(dom.isActive()), bool(dom.isPersistent())


def _flags(live: bool, config: bool) -> int:
    return (_LIVE if live else 0) | (_CONFIG if config else 0)


def _now(config: bool) -> Applied:
    return Applied(live=True, config=config, note=NOW_AND_NEXT_BOOT if config else NOW_ONLY)


def _applied(live: bool, config: bool) -> Applied:
    return _now(config) if live else Applied(live=False, config=config, note=NEXT_BOOT)


def _definitions(dom: Domain, *, live: bool, config: bool) -> list[ET.Element]:
    roots = []
    if live:
        roots.append(parse(dom.XMLDesc(0)))
    if config:
        roots.append(parse(dom.XMLDesc(_INACTIVE)))
    return roots


def _locate(
    dom: Domain, *, live: bool, config: bool, find: Callable[[ET.Element], ET.Element | None]
) -> tuple[ET.Element, bool, bool] | None:
    """A device (by ``find``) in the running guest and/or the definition: (element, in live, in config)."""
    in_live = find(parse(dom.XMLDesc(0))) if live else None
    in_config = find(parse(dom.XMLDesc(_INACTIVE))) if config else None
    element = in_live if in_live is not None else in_config
    if element is None:
        return None
    return element, in_live is not None, in_config is not None
