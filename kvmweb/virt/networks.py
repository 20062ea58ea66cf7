"""Virtual networks: define, start, stop, autostart, undefine and read back; and the host's own interfaces.

Networks are found by UUID, as the inventory lists them; each function that changes a network
returns its ``NetworkRecord``. Defining takes a ``NetworkSpec`` or raw XML that passed
``check_network_xml`` (parsed with defusedxml). Redefining (the XML editor) keeps the UUID.

``list_host_interfaces`` reads the host's physical NICs, bridges, bonds and VLAN devices through
libvirt's interface driver (``virConnectListAllInterfaces``); a host whose libvirt has no such
driver reports ``None``: pages then say the host does not report its interfaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import libvirt

from kvmweb.virt import lookup
from kvmweb.virt.connection import Connection, connect
from kvmweb.virt.errors import AlreadyExists, InvalidArgument
from kvmweb.virt.inventory import network_record_now as _record
from kvmweb.virt.target import HostTarget
from kvmweb.virt.types import NetworkRecord, _Serializable
from kvmweb.virt.xml.network_spec import NetworkSpec, check_network_xml
from kvmweb.virt.xml.network_xml import build_network_xml
from kvmweb.virt.xml.safe import parse

Network = Any  # a libvirt.virNetwork; it never leaves this module
_NO_INTERFACE_DRIVER = frozenset({libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED})


@dataclass(frozen=True, slots=True)
class HostInterface(_Serializable):
    """One of the host's interfaces, as its libvirt reports it. ``type``: ethernet, bridge, bond, vlan."""

    name: str
    type: str
    active: bool
    mac: str | None
    addresses: tuple[str, ...]  # "10.0.0.5/24"
    ports: tuple[str, ...]  # a bridge's or bond's member interfaces
    stp: bool | None  # bridges only


def define_network(target: HostTarget, spec: NetworkSpec | str) -> NetworkRecord:
    """Define (not start) a persistent network from a spec or from checked raw XML."""
    if isinstance(spec, NetworkSpec):
        name, xml = spec.name, build_network_xml(spec)
    else:
        name, xml = check_network_xml(spec), spec
    with connect(target) as conn:
        if _by_name(conn, name) is not None:
            raise AlreadyExists(f"The host already has a network named {name}.")
        return _record(conn.networkDefineXML(xml))


def redefine_network(target: HostTarget, uuid: str, xml: str) -> NetworkRecord:
    """Replace the persistent definition of network ``uuid`` (same name and UUID) with checked XML."""
    name = check_network_xml(xml)
    with connect(target) as conn:
        net = lookup.network(conn, uuid)
        given_uuid = (parse(xml).findtext("uuid") or "").strip().lower()
        if name != net.name() or (given_uuid and given_uuid != str(net.UUIDString()).lower()):
            raise InvalidArgument("Keep the network's <name> and <uuid>: another one would define a different network.")
        return _record(conn.networkDefineXML(xml))


def start_network(target: HostTarget, uuid: str) -> NetworkRecord:
    with connect(target) as conn:
        net = lookup.network(conn, uuid)
        if not net.isActive():
            net.create()
        return _record(net)


def stop_network(target: HostTarget, uuid: str) -> NetworkRecord:
    """Stop (libvirt's "destroy") the network: its guests lose their link until it starts again."""
    with connect(target) as conn:
        net = lookup.network(conn, uuid)
        if net.isActive():
            net.destroy()
        return _record(net)


def set_network_autostart(target: HostTarget, uuid: str, autostart: bool) -> NetworkRecord:
    with connect(target) as conn:
        net = lookup.network(conn, uuid)
        net.setAutostart(1 if autostart else 0)
        return _record(net)


def undefine_network(target: HostTarget, uuid: str) -> None:
    """Stop the network if it runs, then forget its definition."""
    with connect(target) as conn:
        net = lookup.network(conn, uuid)
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()


def get_network_uuid(target: HostTarget, name: str) -> str | None:
    with connect(target) as conn:
        net = _by_name(conn, name)
        return None if net is None else str(net.UUIDString())


def list_host_interfaces(target: HostTarget) -> tuple[HostInterface, ...] | None:
    """The host's interfaces by name, or None when its libvirt does not report them."""
    with connect(target) as conn:
        try:
            found = conn.listAllInterfaces(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in _NO_INTERFACE_DRIVER:
                return None
            raise
        interfaces = [_interface(item.XMLDesc(0), bool(item.isActive())) for item in found]
    return tuple(sorted(interfaces, key=lambda i: i.name))


def bridge_names(target: HostTarget) -> frozenset[str]:
    """Every bridge name in use on the host: its bridge interfaces and its networks' bridges."""
    names = {i.name for i in list_host_interfaces(target) or () if i.type == "bridge"}
    with connect(target) as conn:
        for net in conn.listAllNetworks(0):
            bridge = parse(net.XMLDesc(0)).find("bridge")
            if bridge is not None and bridge.get("name"):
                names.add(str(bridge.get("name")))
    return frozenset(names)


def _interface(xml: str, active: bool) -> HostInterface:
    root = parse(xml)
    addresses = tuple(
        f"{ip.get('address')}/{ip.get('prefix')}" if ip.get("prefix") else str(ip.get("address"))
        for ip in root.findall("protocol/ip")
        if ip.get("address")
    )
    kind = root.get("type", "ethernet")
    members = root.find(kind) if kind in ("bridge", "bond") else None
    ports = () if members is None else tuple(str(i.get("name")) for i in members.findall("interface") if i.get("name"))
    bridge = root.find("bridge")
    mac = root.find("mac")
    return HostInterface(
        name=root.get("name", ""),
        type=kind,
        active=active,
        mac=None if mac is None else mac.get("address"),
        addresses=addresses,
        ports=ports,
        stp=None if bridge is None else bridge.get("stp", "on") != "off",
    )


def _by_name(conn: Connection, name: str) -> Network | None:
    try:
        return conn.networkLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
            return None
        raise
