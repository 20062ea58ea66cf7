"""Checks for a new network, before anything reaches libvirt.

The body is the API's (see networks/api.py); the spec checks each value (kvmweb.virt.xml.network_spec),
and the checks here compare it with what the host has, as last observed: a network of the same
name, a subnet overlapping another network's, a bridge name already taken by a network or one of
the host's interfaces, a host bridge the host does not have. Every refusal names its field in ``details``
(``ipv4.dhcp``, ``bridge.name``). What could not be checked is a ``warning`` in the operation's parameters.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from hosts.models import Host
from kvmweb import virt
from kvmweb.errors import Conflict, Invalid
from kvmweb.virt.xml.bandwidth import Bandwidth, BandwidthRefused, Rate
from kvmweb.virt.xml.network_spec import (
    HOST_BRIDGE_MODES,
    NETWORK_MODES,
    OWN_BRIDGE_MODES,
    IpSpec,
    NetworkSpec,
    NetworkSpecRefused,
    Portgroup,
    Vlan,
    check_network_xml,
)
from kvmweb.virt.xml.network_xml import network_info
from networks.models import Network

DEFINE_MODES = (*NETWORK_MODES, "xml")


def _refused(exc: virt.VirtError, field: str) -> Invalid:
    return Invalid(exc.message, details={getattr(exc, "field", field): exc.message})


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(message, details={field: message})


def _mapping(value: Any, field: str) -> Mapping[str, Any] | None:
    if value in (None, ""):
        return None
    if not isinstance(value, Mapping):
        raise _invalid(field, f"{field} must be an object.")
    return value


def _number(value: Any, field: str) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise _invalid(field, f"{field} must be a whole number.")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _invalid(field, f"{field} must be a whole number; got {value!r}.") from None


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value not in (None, "") else None


def _ip(data: Mapping[str, Any], field: str) -> IpSpec | None:
    given = _mapping(data.get(field), field)
    if given is None:
        return None
    dhcp = _mapping(given.get("dhcp"), f"{field}.dhcp") or {}
    return IpSpec(
        address=str(given.get("address") or "").strip(),
        prefix=_number(given.get("prefix"), f"{field}.prefix") or 0,
        dhcp_start=_text(dhcp.get("start")),
        dhcp_end=_text(dhcp.get("end")),
    )


def _rate(value: Any, field: str) -> Rate | None:
    given = _mapping(value, field)
    if given is None or all(given.get(k) in (None, "") for k in ("average", "peak", "burst")):
        return None
    try:
        return Rate(
            average=_number(given.get("average"), f"{field}.average") or 0,
            peak=_number(given.get("peak"), f"{field}.peak"),
            burst=_number(given.get("burst"), f"{field}.burst"),
        )
    except BandwidthRefused as exc:
        raise _invalid(f"{field}.{exc.field}", exc.message) from exc


def _bandwidth(value: Any, field: str) -> Bandwidth | None:
    given = _mapping(value, field)
    if given is None:
        return None
    inbound, outbound = (
        _rate(given.get("inbound"), f"{field}.inbound"),
        _rate(given.get("outbound"), f"{field}.outbound"),
    )
    return None if inbound is None and outbound is None else Bandwidth(inbound=inbound, outbound=outbound)


def _vlan(value: Any, field: str) -> Vlan | None:
    given = _mapping(value, field)
    if given is None or not given.get("tags"):
        return None
    tags = given["tags"]
    if not isinstance(tags, list | tuple):
        raise _invalid(f"{field}.tags", "VLAN tags must be a list of numbers.")
    return Vlan(
        tags=tuple(_number(tag, f"{field}.tags") or 0 for tag in tags),
        trunk=bool(given.get("trunk")),
        native=_number(given.get("native"), f"{field}.native"),
    )


def _portgroups(value: Any) -> tuple[Portgroup, ...]:
    if value in (None, ""):
        return ()
    if not isinstance(value, list | tuple):
        raise _invalid("portgroups", "Portgroups must be a list.")
    groups = []
    for index, item in enumerate(value):
        field = f"portgroups.{index}"
        given = _mapping(item, field) or {}
        groups.append(
            Portgroup(
                name=str(given.get("name") or "").strip(),
                default=bool(given.get("default")),
                vlan=_vlan(given.get("vlan"), f"{field}.vlan"),
                bandwidth=_bandwidth(given.get("bandwidth"), f"{field}.bandwidth"),
            )
        )
    return tuple(groups)


def network_spec_from(data: Mapping[str, Any]) -> NetworkSpec:
    """The spec for an API-shaped body; Invalid naming the field on any bad value."""
    mode = str(data.get("mode") or "")
    if mode not in NETWORK_MODES:
        raise _invalid("mode", f"Choose a mode: {', '.join(NETWORK_MODES)}.")
    bridge = _mapping(data.get("bridge"), "bridge") or {}
    stp = bridge.get("stp", True)
    try:
        return NetworkSpec(
            name=str(data.get("name") or "").strip(),
            mode=mode,  # type: ignore[arg-type]  # checked above
            ipv4=_ip(data, "ipv4"),
            ipv6=_ip(data, "ipv6"),
            bridge_name=_text(bridge.get("name")),
            stp=stp if isinstance(stp, bool) else str(stp).lower() in ("1", "true", "on", "yes"),
            delay=_number(bridge.get("delay"), "bridge.delay") or 0,
            forward_dev=_text(data.get("forward_dev")),
            portgroups=_portgroups(data.get("portgroups")),
            bandwidth=_bandwidth(data.get("bandwidth"), "bandwidth"),
        )
    except NetworkSpecRefused as exc:
        raise _refused(exc, exc.field) from exc


def _subnets(xml: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(ip.subnet) for ip in network_info(xml).ips if ip.subnet]
    except virt.VirtError:
        return []  # XML kvmweb cannot read says nothing about subnets


def _given_subnets(data: Mapping[str, Any]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The subnets a refused body names, where they parse: for the overlap check alongside its refusal."""
    subnets = []
    for key in ("ipv4", "ipv6"):
        given = data.get(key)
        if isinstance(given, Mapping):
            try:
                subnets.append(ipaddress.ip_interface(f"{given.get('address')}/{given.get('prefix')}").network)
            except ValueError:
                continue
    return subnets


def host_bridge_names(host: Host, *, exclude: int | None = None) -> dict[str, str]:
    """Bridge names taken on ``host`` (as last observed), each with what holds it."""
    taken: dict[str, str] = {}
    for item in (host.interfaces or {}).get("items") or []:
        if item.get("name"):
            taken[item["name"]] = f"the host's {item.get('type') or 'interface'} {item['name']}"
    rows = Network.objects.filter(host=host, gone_since__isnull=True).exclude(bridge="")
    for row in rows.exclude(pk=exclude) if exclude else rows:
        taken[row.bridge] = f"the network {row.name}"
    return taken


def host_bridge_check(host: Host, mode: str, bridge: str) -> tuple[str | None, str | None]:
    """(refusal, warning) for a network on the host's existing bridge ``bridge``, from its last read interfaces."""
    items = {item.get("name"): item.get("type") for item in (host.interfaces or {}).get("items") or []}
    bridges = sorted(name for name, kind in items.items() if kind == "bridge")
    if mode == "openvswitch":
        if items.get(bridge) == "bridge":
            return f"{bridge} on {host.name} is a Linux bridge, not an Open vSwitch one; choose Host bridge.", None
        if bridge in items:
            return None, None
        # libvirt's interface list leaves Open vSwitch bridges out, so a missing one proves nothing.
        return None, f"kvmweb could not check that {host.name} has the Open vSwitch bridge {bridge}."
    if not items:
        return None, f"kvmweb could not check that {host.name} has the bridge {bridge}: its interfaces are not known."
    if items.get(bridge) == "bridge":
        return None, None
    known = ", ".join(bridges) if bridges else "none"
    return f"{host.name} has no bridge named {bridge}; its bridges: {known}.", None


def network_check_define(host: Host, data: Mapping[str, Any]) -> dict[str, Any]:
    """The operation's parameters for a new network: the checked body (or checked raw XML)."""
    mode = str(data.get("mode") or "")
    if mode == "xml":
        xml = str(data.get("xml") or "")
        try:
            name = check_network_xml(xml)
        except virt.VirtError as exc:
            raise _refused(exc, "xml") from exc
        subnets = _subnets(xml)
        info = network_info(xml)
        own_bridge = info.bridge if info.mode in (*OWN_BRIDGE_MODES, "open") else None
        host_bridge = None  # raw XML is the administrator's own: only its name, subnets and own bridge are checked
        params: dict[str, Any] = {"mode": "xml", "xml": xml}
    else:
        # A bad value does not stop the host checks: the form shows every refusal at once.
        refused: Invalid | None = None
        try:
            spec = network_spec_from(data)
        except Invalid as exc:
            refused = exc
        name = str(data.get("name") or "").strip()
        subnets = _given_subnets(data) if refused else [ip.network for ip in (spec.ipv4, spec.ipv6) if ip is not None]
        own_bridge = None if refused or spec.mode not in OWN_BRIDGE_MODES else spec.bridge_name
        host_bridge = None if refused or spec.mode not in HOST_BRIDGE_MODES else spec.bridge_name
        params = {key: data[key] for key in _BODY_KEYS if data.get(key) not in (None, "")}
    errors: dict[str, str] = {}
    if mode != "xml" and refused is not None:
        errors.update({str(k): str(v) for k, v in refused.details.items()})
    rows = list(Network.objects.filter(host=host, gone_since__isnull=True))
    if any(row.name == name for row in rows):
        errors["name"] = f"{host.name} already has a network named {name}."
    for row in rows:
        for theirs in _subnets(row.xml):
            for ours in subnets:
                if ours.version == theirs.version and ours.overlaps(theirs):
                    field = "ipv4.address" if ours.version == 4 else "ipv6.address"
                    if mode == "xml":
                        field = "xml"
                    errors.setdefault(
                        field, f"The subnet {ours} overlaps {theirs} of the network {row.name} on {host.name}."
                    )
    if own_bridge:
        holder = host_bridge_names(host).get(own_bridge)
        if holder:
            errors["xml" if mode == "xml" else "bridge.name"] = (
                f"The bridge name {own_bridge} is taken on {host.name} by {holder}; choose another or leave it empty."
            )
    warning = None
    if host_bridge:
        refusal, warning = host_bridge_check(host, mode, host_bridge)
        if refusal:
            errors["bridge.name"] = refusal
    if mode != "xml" and refused is not None:
        raise Invalid(" ".join(dict.fromkeys(errors.values())), details=errors)
    if errors:
        message = " ".join(dict.fromkeys(errors.values()))
        raise Conflict(message, details=errors)
    for flag in ("start", "autostart"):
        params[flag] = bool(data.get(flag))
    if warning:
        params["warning"] = warning
    return {"host": host.pk, "name": name, **params}


_BODY_KEYS = ("name", "mode", "ipv4", "ipv6", "bridge", "forward_dev", "portgroups", "bandwidth")
