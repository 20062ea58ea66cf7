"""A VM's network interfaces: the checks for adding, changing and removing one, and what the NICs tab shows.

Each `check_*` turns untrusted parameters into the plain JSON the worker's handler carries out
(vms/edit/handlers.py), from what the database knows: the VM's last XML, the other VMs of its host
(for MAC addresses) and the host's networks (their port groups, read from `Network.xml`).

A MAC address must be unique on its host: two NICs with one address on a bridge confuse its
forwarding table, and both guests lose traffic. libvirt checks only within one VM, so kvmweb checks
the host's other VMs (as last observed) and makes new addresses in QEMU's range 52:54:00.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kvmweb import virt
from kvmweb.errors import Invalid
from kvmweb.virt.xml import DomainDevices, NicInfo, domain_devices
from kvmweb.virt.xml.bandwidth import Bandwidth, Rate
from kvmweb.virt.xml.network_spec import Portgroup
from kvmweb.virt.xml.network_xml import network_info
from networks.models import Network
from vms.actions import ACTIONS, action_refusal
from vms.edit import checks
from vms.edit.checks import _devices, _only, _raise
from vms.models import VirtualMachine

NIC_MODELS = ("virtio", "e1000", "rtl8139")
MODEL_LABELS = {
    "virtio": "virtio (fast)",
    "e1000": "e1000 (any guest)",
    "rtl8139": "rtl8139 (old guests)",
}
LINK_STATES = ("up", "down")
MAX_NICS = 8
MAC_PREFIX = "52:54:00"  # QEMU's range, the one libvirt draws from as well
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
MAC_RULE = "Write a MAC address as six pairs of hex digits, such as 52:54:00:12:34:56."
DIRECTIONS = ("inbound", "outbound")
LIMIT_KEYS = ("average", "peak", "burst")
# The page's forms send each limit as its own field: in_average, out_burst, ...
FORM_LIMITS = {
    f"{short}_{key}": (direction, key)
    for short, direction in (("in", "inbound"), ("out", "outbound"))
    for key in LIMIT_KEYS
}
_ACTIVE = frozenset({VirtualMachine.State.RUNNING, VirtualMachine.State.BLOCKED, VirtualMachine.State.PAUSED})


# -- checks -----------------------------------------------------------------------------------------------------


def check_attach_nic(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    """`network` (id or name), optional `portgroup`, `model`, `mac` (else a new one), `link` and `bandwidth`."""
    _only(given, ("network", "portgroup", "model", "mac", "link", "bandwidth", *FORM_LIMITS))
    devices = _devices(vm)
    if len(devices.nics) >= MAX_NICS:
        message = f"{vm.name} has {MAX_NICS} network interfaces, the most kvmweb gives a VM."
        raise Invalid(message, details={"network": message})
    errors: dict[str, str] = {}
    network = _network(vm, given.get("network"))
    model = str(given.get("model") or "virtio")
    link = str(given.get("link") or "up")
    portgroup = str(given.get("portgroup") or "")
    if network is None:
        errors["network"] = f"Choose a network on {vm.host.name}."
    elif not network.active and vm.state != VirtualMachine.State.SHUTOFF:
        errors["network"] = (
            f"Network {network.name} is not active; start it first, or add the NIC while {vm.name} is shut off."
        )
    elif portgroup and portgroup not in {group.name for group in network_portgroups(network)}:
        errors["portgroup"] = _no_portgroup(network, portgroup)
    if model not in NIC_MODELS:
        errors["model"] = f"The NIC model is one of {', '.join(NIC_MODELS)}."
    if link not in LINK_STATES:
        errors["link"] = "The link is up or down."
    bandwidth = _bandwidth(given, errors, listed=False)
    mac = _mac(vm, given.get("mac"), errors)
    _raise(errors)
    assert network is not None
    return {
        "network": network.name,
        "portgroup": portgroup or None,
        "model": model,
        "mac": mac,
        "link": link,
        "bandwidth": bandwidth,
    }


def check_detach_nic(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    _only(given, ("mac",))
    return {"mac": _nic(vm, given.get("mac")).mac}


def check_update_nic(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    """The NIC `mac` gets a new `link` (up, down), `bandwidth` ({} for none) and/or `portgroup` ("" for the default)."""
    # `fields`: what a page form carries, so that an emptied field means "none".
    _only(given, ("mac", "link", "bandwidth", "portgroup", *FORM_LIMITS, "fields"))
    nic = _nic(vm, given.get("mac"))
    listed = {name.strip() for name in str(given.get("fields") or "").split(",") if name.strip()}
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {"mac": nic.mac}
    if "link" in given or "link" in listed:
        link = str(given.get("link") or "")
        if link not in LINK_STATES:
            errors["link"] = "The link is up or down."
        elif link != nic.link_state:
            clean["link"] = link
    if "bandwidth" in given or "bandwidth" in listed or any(key in given for key in FORM_LIMITS):
        bandwidth = _bandwidth(given, errors, listed=True)
        if bandwidth is not None and _limits(bandwidth) != nic.bandwidth:
            clean["bandwidth"] = bandwidth
    if "portgroup" in given or "portgroup" in listed:
        portgroup = str(given.get("portgroup") or "")
        network = _network(vm, nic.source) if nic.type == "network" else None
        if network is None:
            errors["portgroup"] = (
                f"The NIC {nic.mac} is not on a libvirt network kvmweb knows, so it has no port groups."
            )
        elif portgroup and portgroup not in {group.name for group in network_portgroups(network)}:
            errors["portgroup"] = _no_portgroup(network, portgroup)
        elif portgroup != (nic.portgroup or ""):
            clean["portgroup"] = portgroup
    _raise(errors)
    if len(clean) == 1:
        raise Invalid(f"The NIC {nic.mac} already has that: nothing to change.", details={"mac": "Unchanged."})
    return clean


def bandwidth_spec(raw: Mapping[str, Any] | None) -> Bandwidth | None:
    """The checked JSON of `_bandwidth` (as kept in an operation's parameters) as the adapter's value."""
    if raw is None:
        return None
    limits = {
        direction: Rate(int(part["average"]), part.get("peak"), part.get("burst"))
        for direction in DIRECTIONS
        if isinstance(part := raw.get(direction), Mapping)
    }
    return Bandwidth(inbound=limits.get("inbound"), outbound=limits.get("outbound"))


# -- what the database knows ------------------------------------------------------------------------------------


def network_portgroups(network: Network) -> tuple[Portgroup, ...]:
    """The port groups of a network, read from its last XML (untrusted: parsed with defusedxml)."""
    try:
        return network_info(network.xml).portgroups if network.xml else ()
    except virt.VirtError:
        return ()


def host_macs(vm: VirtualMachine) -> dict[str, str]:
    """Every MAC address the VMs of `vm`'s host use (from the database's XML), with the VM using it."""
    taken: dict[str, str] = {}
    rows = (
        VirtualMachine.objects.filter(host_id=vm.host_id)
        .exclude(state=VirtualMachine.State.GONE)
        .values_list("name", "xml")
    )
    for name, xml in rows:
        try:
            nics = domain_devices(xml).nics if xml else ()
        except virt.VirtError:  # a row without usable XML lists no addresses
            continue
        taken.update({nic.mac.lower(): name for nic in nics if nic.mac})
    return taken


def new_mac(taken: Mapping[str, str] | set[str]) -> str:
    """A random address in 52:54:00:xx:xx:xx that no NIC of the host uses."""
    while True:
        tail = secrets.randbits(24)
        mac = f"{MAC_PREFIX}:{tail >> 16:02x}:{(tail >> 8) & 0xFF:02x}:{tail & 0xFF:02x}"
        if mac not in taken:
            return mac


# -- the NICs tab -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NicRow:
    info: NicInfo
    network: Network | None
    portgroups: tuple[Portgroup, ...]
    name: str  # the guest's (eth0) or the host's (vnet0) name for it, when known
    source: str  # where the addresses come from: lease, agent, or "" when there are none
    addresses: list[dict[str, Any]]

    @property
    def key(self) -> str:
        return (self.info.mac or "").replace(":", "")


@dataclass(frozen=True)
class NicTab:
    """The NICs tab's context; `refusal` maps attach/update/detach to why it is unavailable, or ''."""

    readable: bool
    rows: list[NicRow]
    networks: list[Network]
    portgroups: dict[int, tuple[Portgroup, ...]]
    models: list[tuple[str, str]]
    refusal: dict[str, str] = field(default_factory=dict)
    running: bool = False

    @property
    def any_addresses(self) -> bool:
        return any(row.addresses for row in self.rows)


def nic_tab(vm: VirtualMachine, devices: DomainDevices | None, networks: list[Network]) -> NicTab:
    """What the NICs tab shows, from the database only: the NICs, their networks and their last known addresses."""
    by_name = {network.name: network for network in networks}
    groups = {network.pk: network_portgroups(network) for network in networks}
    running = vm.state in _ACTIVE
    known = {str(nic.get("mac") or ""): nic for nic in (vm.addresses or []) if isinstance(nic, dict)} if running else {}
    rows = []
    for info in devices.nics if devices else ():
        network = by_name.get(info.source or "") if info.type == "network" else None
        seen = known.get((info.mac or "").lower(), {})
        rows.append(
            NicRow(
                info=info,
                network=network,
                portgroups=groups.get(network.pk, ()) if network is not None else (),
                name=str(seen.get("name") or ""),
                source=str(seen.get("source") or ""),
                addresses=list(seen.get("addresses") or []),
            )
        )
    refusal = {
        name.replace("-", "_"): action_refusal(vm, ACTIONS[name]) or ""
        for name in ("attach-nic", "update-nic", "detach-nic")
        if name in ACTIONS
    }
    return NicTab(
        readable=devices is not None,
        rows=rows,
        networks=networks,
        portgroups={pk: found for pk, found in groups.items() if found},
        models=[(model, MODEL_LABELS[model]) for model in NIC_MODELS],
        refusal=refusal,
        running=running,
    )


# -- helpers ----------------------------------------------------------------------------------------------------


def _nic(vm: VirtualMachine, raw: Any) -> NicInfo:
    mac = _normal_mac(raw)
    for nic in _devices(vm).nics:
        if nic.mac and nic.mac.lower() == mac:
            return replace(nic, mac=mac)
    message = f"{vm.name} has no network interface with MAC address {mac or '(none given)'}."
    raise Invalid(message, details={"mac": message})


def _normal_mac(raw: Any) -> str:
    return str(raw or "").strip().lower().replace("-", ":")


def _mac(vm: VirtualMachine, raw: Any, errors: dict[str, str]) -> str:
    taken = host_macs(vm)
    if raw in (None, ""):
        return new_mac(taken)
    mac = _normal_mac(raw)
    if not MAC.fullmatch(mac):
        errors["mac"] = f"{str(raw)[:40]!r} is not a MAC address. {MAC_RULE}"
    elif int(mac[:2], 16) & 1:
        errors["mac"] = f"{mac} is a multicast address (its first byte is odd); a NIC needs a unicast one."
    elif mac == "00:00:00:00:00:00":
        errors["mac"] = "00:00:00:00:00:00 is not a usable MAC address."
    elif mac in taken:
        user = taken[mac]
        where = f"another NIC of {vm.name}" if user == vm.name else f"{user} on {vm.host.name}"
        errors["mac"] = (
            f"MAC address {mac} is already used by {where}: two NICs with one address break each other's traffic. "
            "Leave the MAC empty to get a new one."
        )
    return mac


def _bandwidth(given: Mapping[str, Any], errors: dict[str, str], *, listed: bool) -> dict[str, Any] | None:
    """Limits from `bandwidth` (JSON) or the form's fields; None when none were given (and not `listed`)."""
    raw = given.get("bandwidth")
    flat = {key: value for key, value in given.items() if key in FORM_LIMITS and value not in (None, "")}
    if raw in (None, "") and not flat:
        return {"inbound": None, "outbound": None} if listed else None
    if raw in (None, ""):
        raw = {}
        for key, value in flat.items():
            direction, name = FORM_LIMITS[key]
            raw.setdefault(direction, {})[name] = value
    if not isinstance(raw, Mapping) or set(raw) - set(DIRECTIONS):
        errors["bandwidth"] = 'Bandwidth is {"inbound": {...}, "outbound": {...}}, each with average, peak and burst.'
        return None
    clean: dict[str, Any] = {"inbound": None, "outbound": None}
    for direction in DIRECTIONS:
        part = raw.get(direction)
        if part in (None, "", {}):
            continue
        label = "Inbound" if direction == "inbound" else "Outbound"
        if not isinstance(part, Mapping) or set(part) - set(LIMIT_KEYS):
            errors[f"bandwidth.{direction}"] = f"{label} bandwidth takes average, peak and burst."
            continue
        numbers = {key: checks._whole(part.get(key)) for key in LIMIT_KEYS if part.get(key) not in (None, "")}
        if any(value is None for value in numbers.values()):
            errors[f"bandwidth.{direction}"] = f"{label} bandwidth: rates (kB/s) and burst (KiB) are whole numbers."
            continue
        if "average" not in numbers:
            errors[f"bandwidth.{direction}"] = f"{label} bandwidth needs an average rate (kB/s)."
            continue
        try:
            limit = Rate(**numbers)  # type: ignore[arg-type]
        except virt.InvalidArgument as exc:
            errors[f"bandwidth.{direction}"] = f"{label}: {exc.message}"
            continue
        clean[direction] = {key: getattr(limit, key) for key in LIMIT_KEYS}
    return clean


def _limits(bandwidth: Mapping[str, Any]) -> Bandwidth | None:
    spec = bandwidth_spec(bandwidth)
    return None if spec is None or spec.empty else spec


def _network(vm: VirtualMachine, raw: Any) -> Network | None:
    """A network of `vm`'s host by row id or name, or None."""
    networks = Network.objects.filter(host_id=vm.host_id, gone_since__isnull=True)
    if raw in (None, ""):
        return None
    if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
        found = networks.filter(pk=int(raw)).first()
        if found is not None:
            return found
    return networks.filter(name=str(raw)).first()


def _no_portgroup(network: Network, portgroup: str) -> str:
    names = [group.name for group in network_portgroups(network)]
    offered = f"it has {', '.join(names)}" if names else "it has none"
    return f"Network {network.name} has no port group {portgroup!r}; {offered}."
