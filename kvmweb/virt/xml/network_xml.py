"""Turn a NetworkSpec into libvirt network XML with ElementTree, and read a network's XML back into facts."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from kvmweb.virt.xml.bandwidth import Bandwidth, bandwidth_element, read_bandwidth
from kvmweb.virt.xml.network_spec import IpSpec, NetworkSpec, Portgroup, Vlan
from kvmweb.virt.xml.safe import parse


def build_network_xml(spec: NetworkSpec) -> str:
    """Return the libvirt XML for ``spec``, indented, ending with a newline."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = spec.name
    if spec.mode in ("nat", "route"):
        forward = ET.SubElement(root, "forward", mode=spec.mode)
        if spec.forward_dev:
            forward.set("dev", spec.forward_dev)
    elif spec.mode == "macvtap":
        forward = ET.SubElement(root, "forward", mode="bridge")
        ET.SubElement(forward, "interface", dev=str(spec.forward_dev))
    elif spec.mode in ("bridge", "openvswitch"):
        ET.SubElement(root, "forward", mode="bridge")
    if spec.mode in ("nat", "route", "isolated"):
        bridge = ET.SubElement(root, "bridge")
        if spec.bridge_name:
            bridge.set("name", spec.bridge_name)
        bridge.set("stp", "on" if spec.stp else "off")
        bridge.set("delay", str(spec.delay))
    elif spec.bridge_name:
        ET.SubElement(root, "bridge", name=spec.bridge_name)
    if spec.mode == "openvswitch":
        ET.SubElement(root, "virtualport", type="openvswitch")
    if spec.bandwidth is not None:
        root.append(bandwidth_element(spec.bandwidth))
    for group in spec.portgroups:
        _portgroup(root, group)
    if spec.ipv4 is not None:
        _ip(root, spec.ipv4, family=None)
    if spec.ipv6 is not None:
        _ip(root, spec.ipv6, family="ipv6")
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _portgroup(parent: ET.Element, group: Portgroup) -> None:
    element = ET.SubElement(parent, "portgroup", name=group.name)
    if group.default:
        element.set("default", "yes")
    if group.vlan is not None:
        vlan = ET.SubElement(element, "vlan")
        if group.vlan.trunk:
            vlan.set("trunk", "yes")
        for tag in group.vlan.tags:
            tag_element = ET.SubElement(vlan, "tag", id=str(tag))
            if group.vlan.native == tag:
                tag_element.set("nativeMode", "untagged")
    if group.bandwidth is not None:
        element.append(bandwidth_element(group.bandwidth))


def _ip(parent: ET.Element, ip: IpSpec, *, family: str | None) -> None:
    element = ET.SubElement(parent, "ip")
    if family:
        element.set("family", family)
    element.set("address", ip.address)
    element.set("prefix", str(ip.prefix))
    if ip.dhcp_start and ip.dhcp_end:
        dhcp = ET.SubElement(element, "dhcp")
        ET.SubElement(dhcp, "range", start=ip.dhcp_start, end=ip.dhcp_end)


# Reading a network's XML back (for pages and checks; the XML may be anything libvirt accepted)


@dataclass(frozen=True, slots=True)
class NetworkIp:
    family: str  # ipv4 or ipv6
    address: str
    prefix: int | None
    subnet: str | None  # e.g. 10.77.0.0/24; None when the XML's address/prefix do not parse
    dhcp_ranges: tuple[tuple[str, str], ...]
    has_dhcp: bool = False  # a <dhcp> element, even one with only host entries
    dhcp_hosts: tuple[tuple[str, str, str, str], ...] = ()  # (mac, ip, name, id) reservations; id: an IPv6 DUID


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    mode: str  # nat, route, isolated, bridge, macvtap, openvswitch, or libvirt's own mode word
    bridge: str | None
    stp: bool | None
    delay: int | None
    forward_dev: str | None  # <forward dev> or macvtap's <interface dev>
    ips: tuple[NetworkIp, ...]
    portgroups: tuple[Portgroup, ...]
    bandwidth: Bandwidth | None


def network_info(xml: str) -> NetworkInfo:
    root = parse(xml)
    forward = root.find("forward")
    bridge = root.find("bridge")
    virtualport = root.find("virtualport")
    mode = "isolated" if forward is None else forward.get("mode", "nat")
    forward_dev = None if forward is None else forward.get("dev")
    if forward is not None and mode == "bridge":
        interface = forward.find("interface")
        if virtualport is not None and virtualport.get("type") == "openvswitch":
            mode = "openvswitch"
        elif interface is not None and bridge is None:
            mode, forward_dev = "macvtap", interface.get("dev")
    stp = delay = None
    if bridge is not None and mode in ("nat", "route", "isolated", "open"):
        stp = bridge.get("stp", "on") != "off"
        delay = _int(bridge.get("delay")) or 0
    return NetworkInfo(
        mode=mode,
        bridge=None if bridge is None else bridge.get("name"),
        stp=stp,
        delay=delay,
        forward_dev=forward_dev,
        ips=tuple(_read_ip(element) for element in root.findall("ip")),
        portgroups=tuple(_read_portgroup(element) for element in root.findall("portgroup")),
        bandwidth=read_bandwidth(root.find("bandwidth")),
    )


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _read_ip(element: ET.Element) -> NetworkIp:
    address = element.get("address", "")
    family = element.get("family") or ("ipv6" if ":" in address else "ipv4")
    prefix = _int(element.get("prefix"))
    netmask = element.get("netmask")
    if prefix is None and netmask is None and family == "ipv4":
        prefix = 24  # libvirt's default for an IPv4 address without netmask or prefix (a class C)
    subnet = None
    try:
        interface = ipaddress.ip_interface(f"{address}/{prefix if prefix is not None else netmask}")
        subnet, prefix = str(interface.network), interface.network.prefixlen
    except ValueError:
        pass
    ranges = tuple((r.get("start", ""), r.get("end", "")) for r in element.findall("dhcp/range"))
    hosts = tuple(
        ((h.get("mac") or "").lower(), h.get("ip") or "", h.get("name") or "", (h.get("id") or "").lower())
        for h in element.findall("dhcp/host")
    )
    return NetworkIp(
        family=family,
        address=address,
        prefix=prefix,
        subnet=subnet,
        dhcp_ranges=ranges,
        has_dhcp=element.find("dhcp") is not None,
        dhcp_hosts=hosts,
    )


def _read_portgroup(element: ET.Element) -> Portgroup:
    vlan_element = element.find("vlan")
    vlan = None
    if vlan_element is not None:
        tags = tuple(t for t in (_int(tag.get("id")) for tag in vlan_element.findall("tag")) if t is not None)
        native = next((_int(tag.get("id")) for tag in vlan_element.findall("tag") if tag.get("nativeMode")), None)
        vlan = Vlan(tags=tags, trunk=vlan_element.get("trunk") == "yes", native=native)
    return Portgroup(
        name=element.get("name", ""),
        default=element.get("default") == "yes",
        vlan=vlan,
        bandwidth=read_bandwidth(element.find("bandwidth")),
    )
