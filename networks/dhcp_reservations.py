"""Static DHCP host reservations of a network: checks, services and operations.

An IPv4 reservation gives a MAC its address (and optionally a name); an IPv6 one gives a DHCPv6 client,
matched by its DUID or its host name (one at least; libvirt refuses a MAC there), its address. A
reservation is named by its key: its MAC (IPv4) or its address (IPv6).

`reservation_add`, `reservation_edit` and `reservation_remove` check the input against the network as
last observed (its row's XML) before anything reaches libvirt, then queue an operation
(`network.reservation-add|edit|remove`); the worker applies it with virNetworkUpdate (live and in the
config of a running persistent network: dnsmasq is told, no restart), then refreshes the network's
row and pushes `network.state`. Administrators only ("network.manage").

libvirt allows a reservation outside the DHCP range, and even outside the subnet, so kvmweb limits it: to
the subnet, not the gateway, not the subnet's network (or IPv4 broadcast) address, not another reservation's.
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
from kvmweb.virt.network_dhcp import DhcpReservation, IpDhcp
from networks.actions import _network_for_operation, network_sync, network_target
from networks.dhcp import network_dhcp
from networks.models import Network

MANAGE = "network.manage"
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# A DUID: its 2-byte type and at least one more byte, up to 130 bytes (RFC 8415), as libvirt and dnsmasq write it.
DUID_RE = re.compile(r"^[0-9a-f]{1,2}(:[0-9a-f]{1,2}){2,129}$")
# A host name dnsmasq accepts: dot-separated labels of letters, digits and inner hyphens.
NAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$", re.I)
FIELDS = ("family", "mac", "duid", "ip", "name")
FAMILIES = {"ipv4": "IPv4", "ipv6": "IPv6"}


def reservation_may_manage(user: AbstractBaseUser | AnonymousUser, network: Network) -> bool:
    """For templates: whether the add, edit and remove forms apply to `user`."""
    try:
        access.require(user, MANAGE)
    except (Forbidden, NotVisible):
        return False
    return True


def reservation_payload(reservation: DhcpReservation) -> dict[str, str]:
    return {
        "family": reservation.family,
        "mac": reservation.mac,
        "duid": reservation.duid,
        "ip": reservation.ip,
        "name": reservation.name,
    }


def network_reservations(network: Network) -> list[DhcpReservation]:
    """IPv4 reservations first, then IPv6 ones, each in the network's order."""
    configs = (network_dhcp(network, family) for family in FAMILIES)
    return [reservation for config in configs if config for reservation in config.reservations]


# Checks (before anything reaches libvirt)


def reservation_check(
    network: Network, data: Mapping[str, Any], *, replacing: DhcpReservation | None = None
) -> DhcpReservation:
    """A clean reservation from untrusted input, or Invalid/Conflict naming each bad field.

    ``family`` (default ipv4) picks the DHCP section. With `replacing` (an edit), that reservation's
    family applies, missing fields keep its values, and it is not an overlap.
    """
    _refuse_state(network)
    given = {key: str(data.get(key) if data.get(key) is not None else "").strip() for key in FIELDS if key in data}
    if replacing is not None:
        given = {**reservation_payload(replacing), **given, "family": replacing.family}
    family = _check_family(given.get("family") or "ipv4")
    config = _dhcp_section(network, family)
    errors: dict[str, str] = {}
    if family == "ipv4":
        mac, duid = _check_mac(given.get("mac", ""), errors), _not_given(given, "duid", _DUID_IN_IPV4, errors)
    else:
        mac, duid = _not_given(given, "mac", _MAC_IN_IPV6, errors), _check_duid(given.get("duid", ""), errors)
    ip = _check_ip(given.get("ip", ""), config, errors)
    name = _check_name(given.get("name", ""), errors)
    if family == "ipv6" and not (duid or name or "duid" in errors or "name" in errors):
        errors["duid"] = "Give the client's DUID or its host name (or both): DHCPv6 matches a client by one of them."
    if errors:
        raise Invalid(_summary(errors), details=errors)
    new = DhcpReservation(mac=mac, ip=ip, name=name, duid=duid)
    overlaps = _overlaps(new, config, replacing)
    if overlaps:
        raise Conflict(_summary(overlaps), details=overlaps)
    return new


_DUID_IN_IPV4 = "An IPv4 reservation matches a client by its MAC; a DUID only applies to IPv6."
_MAC_IN_IPV6 = "An IPv6 reservation matches a client by its DUID or host name; libvirt takes no MAC there."


def reservation_find(network: Network, key: str) -> DhcpReservation:
    """The network's reservation for `key`, its MAC or (IPv6) its address, as last observed; NotVisible if none."""
    wanted = _normal_key(key)
    for reservation in network_reservations(network):
        if _normal_key(reservation.key) == wanted:
            return reservation
    message = f"{network.name} has no DHCP reservation for {key}."
    raise NotVisible(message, details={"ip" if ":" in wanted and not MAC_RE.match(wanted) else "mac": message})


def _normal_key(key: str) -> str:
    """A MAC in lower case, an IPv6 address in its short form (anything else as given, in lower case)."""
    text = key.strip().lower()
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        return text


def _refuse_state(network: Network) -> None:
    host = network.host
    if network.gone_since is not None:
        raise Conflict(f"{network.name} is no longer on its host.")
    if not host.enabled:
        raise Conflict(f"Cannot change reservations: the host {host.name} is disabled.")
    if host.state == Host.State.UNREACHABLE:
        raise Conflict(f"Cannot change reservations: the host {host.name} is unreachable.")


def _check_family(value: str) -> str:
    if value not in FAMILIES:
        message = f"A reservation is ipv4 or ipv6; got {value!r}."
        raise Invalid(message, details={"family": message})
    return value


def _dhcp_section(network: Network, family: str) -> IpDhcp:
    config = network_dhcp(network, family)
    if config is None:
        label = FAMILIES[family]
        message = f"{network.name} has no {label} DHCP server, so it cannot hold {label} reservations."
        raise Conflict(message, details={"network": message})
    return config


def _not_given(given: Mapping[str, str], key: str, message: str, errors: dict[str, str]) -> str:
    if given.get(key):
        errors[key] = message
    return ""


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


def _check_duid(value: str, errors: dict[str, str]) -> str:
    """A DUID, written with two hex digits a byte (so one client has one spelling); empty when not given."""
    duid = value.lower().replace("-", ":")
    if duid and not DUID_RE.match(duid):
        errors["duid"] = (
            f"{value} is not a DUID: 3 to 130 bytes in hex separated by colons, like "
            "00:03:00:01:52:54:00:12:34:56 (type 3, hardware type 1, then the MAC)."
        )
        return duid
    return _normal_duid(duid)


def _check_ip(value: str, config: IpDhcp, errors: dict[str, str]) -> str:
    subnet, label = config.subnet, FAMILIES[config.family]
    if not value:
        errors["ip"] = f"Enter the {label} address to reserve, inside {subnet}."
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is None or address.version != subnet.version:
        errors["ip"] = f"{value} is not an {label} address."
        return value
    if address not in subnet:
        errors["ip"] = f"{value} is outside the network's subnet {subnet}."
    elif address == ipaddress.ip_address(config.address):
        errors["ip"] = f"{value} is the network's gateway (the host's own address on it)."
    elif address == subnet.network_address and subnet.prefixlen < subnet.max_prefixlen - 1:
        errors["ip"] = f"{value} is the subnet's network address; no guest can have it."
    elif subnet.version == 4 and subnet.prefixlen < 31 and address == subnet.broadcast_address:
        errors["ip"] = f"{value} is the subnet's broadcast address; no guest can have it."
    return str(address)


def _check_name(value: str, errors: dict[str, str]) -> str:
    if value and not NAME_RE.match(value):
        errors["name"] = (
            f"{value} is not a host name: letters, digits and hyphens (not at either end), "
            "up to 63 in each dot-separated part."
        )
    return value


def _overlaps(new: DhcpReservation, config: IpDhcp, replacing: DhcpReservation | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for other in config.reservations:
        if replacing is not None and other == replacing:
            continue
        label = _describe(other)
        if new.mac and other.mac == new.mac:
            found.setdefault("mac", f"{new.mac} already has a reservation: {label}.")
        if new.duid and _normal_duid(other.duid) == new.duid:
            found.setdefault("duid", f"The DUID {new.duid} already has a reservation: {label}.")
        if _normal_key(other.ip) == new.ip:
            found.setdefault("ip", f"{new.ip} is already reserved: {label}.")
        if new.name and other.name.lower() == new.name.lower():
            found.setdefault("name", f"The name {new.name} is already used: {label}.")
    return found


def _normal_duid(duid: str) -> str:
    """libvirt keeps a DUID as written ("0:3:0:1:..."): compare them with two digits a byte."""
    return ":".join(part.zfill(2) for part in duid.lower().split(":")) if duid else ""


def _describe(reservation: DhcpReservation) -> str:
    client = reservation.mac or reservation.duid or reservation.name
    named = reservation.name and reservation.name != client
    return f"{client} → {reservation.ip}" + (f" ({reservation.name})" if named else "")


def _summary(errors: Mapping[str, str]) -> str:
    return " ".join(errors.values())


# Services


def reservation_add(*, actor: Actor, network: Network, data: Mapping[str, Any]) -> Operation:
    """Queue adding a reservation. Raises Forbidden, Invalid or Conflict (nothing changes then)."""
    checked = _checked(actor, network, "network.reservation-add", lambda: reservation_check(network, data))
    return _start(actor, network, "network.reservation-add", {"new": reservation_payload(checked)})


def reservation_edit(*, actor: Actor, network: Network, key: str, data: Mapping[str, Any]) -> Operation:
    """Queue changing the reservation named by `key` (its MAC, or IPv6 address): any of its fields."""

    def check() -> tuple[DhcpReservation, DhcpReservation]:
        old = reservation_find(network, key)
        return old, reservation_check(network, data, replacing=old)

    old, new = _checked(actor, network, "network.reservation-edit", check)
    if old == new:
        raise Invalid("Nothing to change: the reservation already says that.")
    params = {"old": reservation_payload(old), "new": reservation_payload(new)}
    return _start(actor, network, "network.reservation-edit", params)


def reservation_remove(*, actor: Actor, network: Network, key: str) -> Operation:
    """Queue removing the reservation named by `key`; a guest keeps its lease until it expires."""

    def check() -> DhcpReservation:
        _refuse_state(network)
        return reservation_find(network, key)

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
    queue = network.host.task_queue
    return operation_start(kind=kind, target=network_target(network), actor=actor, params=params, queue=queue)


# Operation handlers (run by a worker)


def _reservation(params: Mapping[str, Any]) -> DhcpReservation:
    return DhcpReservation(
        mac=str(params["mac"]),
        ip=str(params["ip"]),
        name=str(params.get("name") or ""),
        duid=str(params.get("duid") or ""),
    )


def _apply(op: Operation, progress: Progress) -> dict[str, Any]:
    network, host = _network_for_operation(op)
    target, uuid = host.virt_target(), str(network.uuid)
    if op.kind == "network.reservation-add":
        new = _reservation(op.params["new"])
        progress(30, f"Reserving {new.ip} for {new.mac or new.duid or new.name} on {network.name}")
        virt_dhcp.add_dhcp_host(target, uuid, new)
    elif op.kind == "network.reservation-edit":
        old, new = _reservation(op.params["old"]), _reservation(op.params["new"])
        progress(30, f"Changing the reservation of {old.key} on {network.name}")
        virt_dhcp.modify_dhcp_host(target, uuid, old, new)
    else:
        old = _reservation(op.params["old"])
        progress(30, f"Removing the reservation of {old.key} on {network.name}")
        virt_dhcp.delete_dhcp_host(target, uuid, old)
    network_sync(host, uuid)  # the row's XML now lists the change; network.state is pushed
    return {"network": network.pk, **{key: op.params[key] for key in ("old", "new") if key in op.params}}


for _kind, _label in (
    ("add", "Add DHCP reservation"),
    ("edit", "Edit DHCP reservation"),
    ("remove", "Remove DHCP reservation"),
):
    operation_kind(f"network.reservation-{_kind}", label=_label, deadline_seconds=120, retry_transient=False)(_apply)
