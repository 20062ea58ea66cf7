"""DHCP of a libvirt network: its leases, and its static host reservations.

Leases come from ``virNetworkGetDHCPLeases`` (dnsmasq's lease file, as libvirt reads it). libvirt
has no lease event, so callers poll. The test driver does not implement it: there ``Unsupported``.

Reservations (``<ip><dhcp><host mac= ip= name=/>``) are read from the network's XML and changed with
``virNetworkUpdate`` on the IPv4 ``<dhcp>`` section: live and in the config on a running persistent
network (dnsmasq is told, no restart), only in the config of a stopped one.
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
from kvmweb.virt.xml.network_xml import network_info

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
    mac: str
    ip: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class DhcpRange:
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class Ipv4Dhcp:
    """The network's IPv4 ``<ip>`` with DHCP: its address (the gateway), subnet, ranges and reservations."""

    address: str
    prefix: int
    ranges: tuple[DhcpRange, ...]
    reservations: tuple[DhcpReservation, ...]

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.address}/{self.prefix}", strict=False)


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


def ipv4_dhcp(xml: str) -> Ipv4Dhcp | None:
    """The first IPv4 ``<ip>`` of a network's XML that has ``<dhcp>``, or None (no IPv4 DHCP)."""
    for ip in network_info(xml).ips:
        if ip.family != "ipv4" or not ip.has_dhcp or not ip.address or ip.prefix is None:
            continue
        return Ipv4Dhcp(
            address=ip.address,
            prefix=ip.prefix,
            ranges=tuple(DhcpRange(start, end) for start, end in ip.dhcp_ranges),
            reservations=tuple(DhcpReservation(mac=mac, ip=addr, name=name) for mac, addr, name in ip.dhcp_hosts),
        )
    return None


# Changing


def dhcp_host_xml(reservation: DhcpReservation) -> str:
    """The ``<host>`` element ``virNetworkUpdate`` takes."""
    host = ET.Element("host", mac=reservation.mac, ip=reservation.ip)
    if reservation.name:
        host.set("name", reservation.name)
    return ET.tostring(host, encoding="unicode")


def add_dhcp_host(target: HostTarget, uuid: str, reservation: DhcpReservation) -> str:
    """Add the reservation; returns the network's XML afterwards (as running, or as defined when stopped)."""
    return _update(target, uuid, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, reservation)


def modify_dhcp_host(target: HostTarget, uuid: str, old: DhcpReservation, new: DhcpReservation) -> str:
    """Change a reservation's IP or name (libvirt finds it by MAC); a new MAC is a delete and an add."""
    if old.mac == new.mac:
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
        # parentIndex -1: the first IPv4 <ip> (a <host> with a MAC belongs to IPv4).
        net.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, dhcp_host_xml(reservation), flags)
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
