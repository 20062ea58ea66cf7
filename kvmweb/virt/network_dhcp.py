"""DHCP of a libvirt network: its leases, and its static host reservations.

Leases come from ``virNetworkGetDHCPLeases`` (dnsmasq's lease file, as libvirt reads it). libvirt
has no lease event, so callers poll. The test driver does not implement it: there ``Unsupported``.

Reservations are read from the network's XML and changed with ``virNetworkUpdate`` on the ``<dhcp>``
section of the first ``<ip>`` of their family: live and in the config on a running persistent network
(dnsmasq is told, no restart), only in the config of a stopped one. An IPv4 ``<host mac= ip= name=/>``
matches a client by MAC; an IPv6 ``<host id= name= ip=/>`` by its DUID (``id``) or name, never a MAC
(libvirt refuses one there, and needs an id or a name).
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import libvirt

from kvmweb.virt import lookup
from kvmweb.virt.connection import connect
from kvmweb.virt.errors import NotFound
from kvmweb.virt.target import HostTarget
from kvmweb.virt.xml.network_xml import NetworkIp, network_info

LibvirtNetwork = Any  # a libvirt.virNetwork; it never leaves this module


@dataclass(frozen=True, slots=True)
class DhcpLease:
    mac: str
    ip: str
    prefix: int | None
    hostname: str
    client_id: str
    expires: datetime | None  # UTC; None for a lease that never expires
    type: str  # "ipv4" or "ipv6"


@dataclass(frozen=True, slots=True)
class DhcpReservation:
    mac: str  # IPv4 only
    ip: str
    name: str = ""
    duid: str = ""  # IPv6 only: the client's DHCP unique identifier, libvirt's ``id``

    @property
    def family(self) -> str:
        return "ipv6" if ":" in self.ip else "ipv4"

    @property
    def key(self) -> str:
        """What names it in URLs: its MAC (IPv4), or its address (IPv6: no MAC, and name and DUID are optional)."""
        return self.ip if self.family == "ipv6" else self.mac


@dataclass(frozen=True, slots=True)
class DhcpRange:
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class IpDhcp:
    """The network's ``<ip>`` of one family with DHCP: its address (the gateway), subnet, ranges and reservations."""

    family: str  # "ipv4" or "ipv6"
    address: str
    prefix: int
    ranges: tuple[DhcpRange, ...]
    reservations: tuple[DhcpReservation, ...]

    @property
    def subnet(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(f"{self.address}/{self.prefix}", strict=False)


# Reading


def get_dhcp_leases(target: HostTarget, uuid: str) -> tuple[DhcpLease, ...]:
    """The network's current leases, sorted by IP (an inactive network has none)."""
    with connect(target) as conn:
        net = lookup.network(conn, uuid)
        if not net.isActive():
            return ()
        raw = net.DHCPLeases(None, 0) or []
    leases = (lease_from_libvirt(item) for item in raw)
    return tuple(sorted(leases, key=lambda lease: (lease.type, _ip_key(lease.ip), lease.mac)))


def lease_from_libvirt(item: dict[str, Any]) -> DhcpLease:
    expiry = int(item.get("expirytime") or 0)
    prefix = item.get("prefix")
    return DhcpLease(
        mac=str(item.get("mac") or "").lower(),
        ip=str(item.get("ipaddr") or ""),
        prefix=int(prefix) if prefix is not None else None,
        hostname=str(item.get("hostname") or ""),
        client_id=str(item.get("clientid") or ""),
        expires=datetime.fromtimestamp(expiry, tz=UTC) if expiry > 0 else None,
        type="ipv6" if item.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV6 else "ipv4",
    )


def _ip_key(ip: str) -> tuple[int, int]:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0)
    return (address.version, int(address))


def ip_dhcp(xml: str, family: str = "ipv4") -> IpDhcp | None:
    """The first ``<ip>`` of ``family`` in a network's XML that has ``<dhcp>``, or None (no DHCP of that family)."""
    found = _dhcp_ip(xml, family)
    if found is None:
        return None
    ip = found[1]
    assert ip.prefix is not None  # _dhcp_ip skips an <ip> without one
    return IpDhcp(
        family=family,
        address=ip.address,
        prefix=ip.prefix,
        ranges=tuple(DhcpRange(start, end) for start, end in ip.dhcp_ranges),
        reservations=tuple(
            DhcpReservation(mac=mac, ip=addr, name=name, duid=duid) for mac, addr, name, duid in ip.dhcp_hosts
        ),
    )


def _dhcp_ip(xml: str, family: str) -> tuple[int, NetworkIp] | None:
    """The index among all ``<ip>`` elements (libvirt's parentIndex) and the facts of that family's DHCP one."""
    for index, ip in enumerate(network_info(xml).ips):
        if ip.family == family and ip.has_dhcp and ip.address and ip.prefix is not None:
            return index, ip
    return None


# Changing


def dhcp_host_xml(reservation: DhcpReservation) -> str:
    """The ``<host>`` element ``virNetworkUpdate`` takes (DELETE wants every attribute the network lists)."""
    host = ET.Element("host")
    if reservation.family == "ipv4":
        host.set("mac", reservation.mac)
    elif reservation.duid:
        host.set("id", reservation.duid)
    host.set("ip", reservation.ip)
    if reservation.name:
        host.set("name", reservation.name)
    return ET.tostring(host, encoding="unicode")


def add_dhcp_host(target: HostTarget, uuid: str, reservation: DhcpReservation) -> str:
    """Add the reservation; returns the network's XML afterwards (as running, or as defined when stopped)."""
    return _update(target, uuid, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, reservation)


def modify_dhcp_host(target: HostTarget, uuid: str, old: DhcpReservation, new: DhcpReservation) -> str:
    """Change a reservation in place where libvirt can find it by the new one's MAC (IPv4) or address (IPv6);
    a new key is a delete and an add (MODIFY matches on MAC, IP or name, never on an IPv6 id)."""
    if old.key == new.key:
        return _update(target, uuid, libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY, new)
    _update(target, uuid, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, old)
    return _update(target, uuid, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, new)


def delete_dhcp_host(target: HostTarget, uuid: str, reservation: DhcpReservation) -> str:
    """Remove the reservation, given as the network lists it (libvirt matches every attribute)."""
    return _update(target, uuid, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, reservation)


def _update(target: HostTarget, uuid: str, command: int, reservation: DhcpReservation) -> str:
    with connect(target) as conn:
        net = lookup.network(conn, uuid)
        flags = update_flags(active=bool(net.isActive()), persistent=bool(net.isPersistent()))
        found = _dhcp_ip(str(net.XMLDesc(0)), reservation.family)
        # libvirt's -1 picks the first <ip> with DHCP, whatever the family: name the section instead.
        index = -1 if found is None else found[0]
        net.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, index, dhcp_host_xml(reservation), flags)
        return str(net.XMLDesc(0))


def update_flags(*, active: bool, persistent: bool) -> int:
    """Live (dnsmasq reloads its hosts, no restart) while running; the config whenever it persists."""
    flags = 0
    if active:
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
    if persistent:
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    if not flags:
        raise NotFound("The network is neither running nor defined.")
    return flags
