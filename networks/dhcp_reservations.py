"""Static DHCP host reservations (MAC → IP, name) of a network: checks, services and operations.

`reservation_add`, `reservation_edit` and `reservation_remove` check the input against the network as
last observed (its row's XML) before anything reaches libvirt, then queue an operation
(`network.reservation-add|edit|remove`); the worker applies it with virNetworkUpdate (live and in the
config of a running persistent network: dnsmasq is told, no restart), then refreshes the network's
row and pushes `network.state`. Administrators only ("network.manage").

libvirt allows a reservation outside the DHCP range as long as it is inside the subnet, so only the
subnet, the gateway, the subnet's network and broadcast addresses, and the other reservations limit it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from hosts.models import Host
from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record
from kvmweb.errors import Conflict, Forbidden, Invalid, KvmwebError, NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress, operation_start
from kvmweb.virt import network_dhcp as virt_dhcp
from kvmweb.virt.network_dhcp import DhcpReservation, Ipv4Dhcp
from networks.actions import _network_for_operation, network_sync, network_target
from networks.dhcp import network_dhcp
from networks.models import Network

MANAGE = "network.manage"
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# A host name dnsmasq accepts: dot-separated labels of letters, digits and inner hyphens.
NAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$", re.I)
FIELDS = ("mac", "ip", "name")


def reservation_may_manage(user: AbstractBaseUser | AnonymousUser, network: Network) -> bool:
    """For templates: whether the add, edit and remove forms apply to `user`."""
    try:
        access.require(user, MANAGE)
    except (Forbidden, NotVisible):
        return False
    return True


def reservation_payload(reservation: DhcpReservation) -> dict[str, str]:
    return {"mac": reservation.mac, "ip": reservation.ip, "name": reservation.name}


def network_reservations(network: Network) -> list[DhcpReservation]:
    config = network_dhcp(network)
    return list(config.reservations) if config else []


# Checks (before anything reaches libvirt)


def reservation_check(
    network: Network, data: Mapping[str, Any], *, replacing: DhcpReservation | None = None
) -> DhcpReservation:
    """A clean reservation from untrusted input, or Invalid/Conflict naming each bad field.

    With `replacing` (an edit), missing fields keep that reservation's values and it is not an overlap.
    """
    _refuse_state(network)
    config = _ipv4_dhcp(network)
    given = {key: str(data.get(key) if data.get(key) is not None else "").strip() for key in FIELDS if key in data}
    if replacing is not None:
        given = {**reservation_payload(replacing), **given}
    errors: dict[str, str] = {}
    mac = _check_mac(given.get("mac", ""), errors)
    ip = _check_ip(given.get("ip", ""), config, errors)
    name = _check_name(given.get("name", ""), errors)
    if errors:
        raise Invalid(_summary(errors), details=errors)
    overlaps = _overlaps(DhcpReservation(mac, ip, name), config, replacing)
    if overlaps:
        raise Conflict(_summary(overlaps), details=overlaps)
    return DhcpReservation(mac=mac, ip=ip, name=name)


def reservation_find(network: Network, mac: str) -> DhcpReservation:
    """The network's reservation for `mac` (as last observed); Invalid when it has none."""
    wanted = mac.strip().lower()
    for reservation in network_reservations(network):
        if reservation.mac == wanted:
            return reservation
    message = f"{network.name} has no DHCP reservation for {mac}."
    raise NotVisible(message, details={"mac": message})


def _refuse_state(network: Network) -> None:
    host = network.host
    if network.gone_since is not None:
        raise Conflict(f"{network.name} is no longer on its host.")
    if not host.enabled:
        raise Conflict(f"Cannot change reservations: the host {host.name} is disabled.")
    if host.state == Host.State.UNREACHABLE:
        raise Conflict(f"Cannot change reservations: the host {host.name} is unreachable.")


def _ipv4_dhcp(network: Network) -> Ipv4Dhcp:
    config = network_dhcp(network)
    if config is None:
        message = f"{network.name} has no IPv4 DHCP server, so it cannot hold reservations."
        raise Conflict(message, details={"network": message})
    return config


def _check_mac(value: str, errors: dict[str, str]) -> str:
    mac = value.lower().replace("-", ":")
    if not mac:
        errors["mac"] = "Enter the MAC address of the guest's network card, like 52:54:00:12:34:56."
    elif not MAC_RE.match(mac):
        errors["mac"] = (
            f"{value} is not a MAC address: six pairs of hex digits separated by colons, like 52:54:00:12:34:56."
        )
    elif int(mac[:2], 16) & 1:
        errors["mac"] = f"{value} is a multicast address; a network card's MAC has an even first byte."
    return mac


def _check_ip(value: str, config: Ipv4Dhcp, errors: dict[str, str]) -> str:
    subnet = config.subnet
    if not value:
        errors["ip"] = f"Enter the IPv4 address to reserve, inside {subnet}."
        return value
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        errors["ip"] = f"{value} is not an IPv4 address."
        return value
    if address not in subnet:
        errors["ip"] = f"{value} is outside the network's subnet {subnet}."
    elif address == ipaddress.IPv4Address(config.address):
        errors["ip"] = f"{value} is the network's gateway (the host's own address on it)."
    elif subnet.prefixlen < 31 and address in (subnet.network_address, subnet.broadcast_address):
        which = "network" if address == subnet.network_address else "broadcast"
        errors["ip"] = f"{value} is the subnet's {which} address; no guest can have it."
    return str(address)


def _check_name(value: str, errors: dict[str, str]) -> str:
    if value and not NAME_RE.match(value):
        errors["name"] = (
            f"{value} is not a host name: letters, digits and hyphens (not at either end), "
            "up to 63 in each dot-separated part."
        )
    return value


def _overlaps(new: DhcpReservation, config: Ipv4Dhcp, replacing: DhcpReservation | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for other in config.reservations:
        if replacing is not None and other.mac == replacing.mac:
            continue
        label = f"{other.mac} → {other.ip}" + (f" ({other.name})" if other.name else "")
        if other.mac == new.mac:
            found.setdefault("mac", f"{new.mac} already has a reservation: {label}.")
        if other.ip == new.ip:
            found.setdefault("ip", f"{new.ip} is already reserved: {label}.")
        if new.name and other.name.lower() == new.name.lower():
            found.setdefault("name", f"The name {new.name} is already used: {label}.")
    return found


def _summary(errors: Mapping[str, str]) -> str:
    return " ".join(errors.values())


# Services


def reservation_add(*, actor: Actor, network: Network, data: Mapping[str, Any]) -> Operation:
    """Queue adding a reservation. Raises Forbidden, Invalid or Conflict (nothing changes then)."""
    checked = _checked(actor, network, "network.reservation-add", lambda: reservation_check(network, data))
    return _start(actor, network, "network.reservation-add", {"new": reservation_payload(checked)})


def reservation_edit(*, actor: Actor, network: Network, mac: str, data: Mapping[str, Any]) -> Operation:
    """Queue changing the reservation of `mac` (its MAC, IP or name)."""

    def check() -> tuple[DhcpReservation, DhcpReservation]:
        old = reservation_find(network, mac)
        return old, reservation_check(network, data, replacing=old)

    old, new = _checked(actor, network, "network.reservation-edit", check)
    if old == new:
        raise Invalid("Nothing to change: the reservation already says that.")
    params = {"old": reservation_payload(old), "new": reservation_payload(new)}
    return _start(actor, network, "network.reservation-edit", params)


def reservation_remove(*, actor: Actor, network: Network, mac: str) -> Operation:
    """Queue removing the reservation of `mac`; a guest keeps its lease until it expires."""

    def check() -> DhcpReservation:
        _refuse_state(network)
        return reservation_find(network, mac)

    old = _checked(actor, network, "network.reservation-remove", check)
    return _start(actor, network, "network.reservation-remove", {"old": reservation_payload(old)})


def _checked(actor: Actor, network: Network, kind: str, check: Callable[[], Any]) -> Any:
    access.authorize(actor, MANAGE, target=network_target(network))
    try:
        return check()
    except KvmwebError as exc:
        outcome = AuditEvent.Outcome.FAILED
        audit_record(actor=actor, action=kind, target=network_target(network), outcome=outcome, message=exc.message)
        raise


def _start(actor: Actor, network: Network, kind: str, params: dict[str, Any]) -> Operation:
    return operation_start(kind=kind, target=network_target(network), actor=actor, params=params)


# Operation handlers (run by a worker)


def _reservation(params: Mapping[str, Any]) -> DhcpReservation:
    return DhcpReservation(mac=str(params["mac"]), ip=str(params["ip"]), name=str(params.get("name") or ""))


def _apply(op: Operation, progress: Progress) -> dict[str, Any]:
    network, host = _network_for_operation(op)
    target, uuid = host.virt_target(), str(network.uuid)
    if op.kind == "network.reservation-add":
        new = _reservation(op.params["new"])
        progress(30, f"Reserving {new.ip} for {new.mac} on {network.name}")
        virt_dhcp.add_dhcp_host(target, uuid, new)
    elif op.kind == "network.reservation-edit":
        old, new = _reservation(op.params["old"]), _reservation(op.params["new"])
        progress(30, f"Changing the reservation of {old.mac} on {network.name}")
        virt_dhcp.modify_dhcp_host(target, uuid, old, new)
    else:
        old = _reservation(op.params["old"])
        progress(30, f"Removing the reservation of {old.mac} on {network.name}")
        virt_dhcp.delete_dhcp_host(target, uuid, old)
    network_sync(host, uuid)  # the row's XML now lists the change; network.state is pushed
    return {"network": network.pk, **{key: op.params[key] for key in ("old", "new") if key in op.params}}


for _kind, _label in (
    ("add", "Add DHCP reservation"),
    ("edit", "Edit DHCP reservation"),
    ("remove", "Remove DHCP reservation"),
):
    operation_kind(f"network.reservation-{_kind}", label=_label, deadline_seconds=120, retry_transient=False)(_apply)
