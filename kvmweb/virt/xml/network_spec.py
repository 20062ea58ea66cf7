"""A typed description of a virtual network, checked when it is made, and the check for raw network XML.

Six modes, as people name them (libvirt's ``<forward>`` in brackets):

- ``nat``: an own bridge with DHCP; guests reach out through the host's address (``mode='nat'``);
- ``route``: an own bridge whose subnet the host routes, without address translation (``mode='route'``);
- ``isolated``: an own bridge, no ``<forward>``: guests reach each other and the host only;
- ``bridge``: an existing host bridge such as ``br0`` (``mode='bridge'`` + ``<bridge name>``);
- ``macvtap``: guests share a host NIC directly through macvtap (``mode='bridge'`` + ``<interface dev>``);
- ``openvswitch``: an existing Open vSwitch bridge (``mode='bridge'`` + ``<virtualport type='openvswitch'/>``).

What libvirt supports where (its network XML documentation, "Quality of service" and "Setting VLAN
tag"): a network-wide ``<bandwidth>`` only for route, nat, isolated and (since 6.1) Linux bridge
networks, not macvtap or Open vSwitch ones; VLAN tags (also trunk and native VLAN) in portgroups of
Open vSwitch networks (and SR-IOV ``hostdev`` networks, which kvmweb does not define). A portgroup's
bandwidth applies to each guest NIC in it, which libvirt supports for every mode here.

Each refusal is a ``NetworkSpecRefused`` naming the field (as the API's body spells it). Bandwidth
limits are the shared ``kvmweb.virt.xml.bandwidth`` type, checked when each ``Rate`` is made.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal, get_args

from kvmweb.virt.errors import InvalidArgument
from kvmweb.virt.xml.bandwidth import Bandwidth
from kvmweb.virt.xml.checks import check_text, require
from kvmweb.virt.xml.safe import parse

NetworkMode = Literal["nat", "route", "isolated", "bridge", "macvtap", "openvswitch"]
NETWORK_MODES: tuple[str, ...] = get_args(NetworkMode)
OWN_BRIDGE_MODES = ("nat", "route", "isolated")  # libvirt makes the bridge (virbrN) and runs dnsmasq
HOST_BRIDGE_MODES = ("bridge", "openvswitch")  # a bridge the host already has
BANDWIDTH_MODES = ("nat", "route", "isolated", "bridge")
VLAN_MODES = ("openvswitch",)

# It becomes a file name under /etc/libvirt/qemu/networks.
_NETWORK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
# A Linux interface name: at most 15 characters, no '/', ':' or white space.
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_PORTGROUP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


class NetworkSpecRefused(InvalidArgument):
    """A refused value; ``field`` names it as the API's body does (``ipv4.dhcp``, ``portgroups.0.vlan``)."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def refuse(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise NetworkSpecRefused(message, field=field)


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_network_name(value: object, field: str = "name") -> None:
    refuse(isinstance(value, str) and bool(value), field, "Give the network a name.")
    assert isinstance(value, str)
    refuse(
        _NETWORK_NAME.fullmatch(value) is not None,
        field,
        f"Network name may use letters, digits, '-', '_' and '.' (up to 64, not starting with '.'); got {value!r}.",
    )


def check_ifname(value: object, field: str, what: str) -> None:
    refuse(isinstance(value, str) and bool(value), field, f"Give the {what}.")
    assert isinstance(value, str)
    refuse(
        _IFNAME.fullmatch(value) is not None,
        field,
        f"The {what} must be an interface name: up to 15 letters, digits, '-', '_' or '.'; got {value!r}.",
    )


@dataclass(frozen=True, slots=True)
class Vlan:
    """VLAN tags; ``trunk`` passes several tagged to the guest, ``native`` is the one sent untagged."""

    tags: tuple[int, ...]
    trunk: bool = False
    native: int | None = None

    def check(self, field: str) -> None:
        refuse(isinstance(self.tags, tuple) and bool(self.tags), f"{field}.tags", "Give at least one VLAN tag.")
        for tag in self.tags:
            refuse(_whole(tag, 0, 4095), f"{field}.tags", f"A VLAN id is a whole number from 0 to 4095; got {tag!r}.")
        refuse(len(set(self.tags)) == len(self.tags), f"{field}.tags", "Each VLAN tag may appear once.")
        refuse(
            self.trunk or len(self.tags) == 1,
            f"{field}.tags",
            "Several VLAN tags need trunk mode (the guest then sees them tagged).",
        )
        if self.native is not None:
            refuse(self.native in self.tags, f"{field}.native", "The native VLAN must be one of the portgroup's tags.")
            refuse(self.trunk, f"{field}.native", "A native VLAN only applies to a trunk.")


@dataclass(frozen=True, slots=True)
class Portgroup:
    name: str
    default: bool = False
    vlan: Vlan | None = None
    bandwidth: Bandwidth | None = None


@dataclass(frozen=True, slots=True)
class IpSpec:
    """The host's address on the network, its prefix, and an optional DHCP range."""

    address: str
    prefix: int
    dhcp_start: str | None = None
    dhcp_end: str | None = None

    def check(self, field: str, version: int) -> None:
        name = f"IPv{version}"
        try:
            address = ipaddress.ip_address(self.address)
        except (ValueError, TypeError):
            raise NetworkSpecRefused(f"{self.address!r} is not an {name} address.", field=f"{field}.address") from None
        refuse(address.version == version, f"{field}.address", f"{self.address} is not an {name} address.")
        high = 30 if version == 4 else 126
        refuse(_whole(self.prefix, 8, high), f"{field}.prefix", f"The {name} prefix must be from 8 to {high}.")
        net = self.network
        refuse(
            address != net.network_address,
            f"{field}.address",
            f"{address} is the subnet's own address; use a host address such as {net.network_address + 1}.",
        )
        if version == 4:
            refuse(
                address != net.broadcast_address, f"{field}.address", f"{address} is the subnet's broadcast address."
            )
        if self.dhcp_start is None and self.dhcp_end is None:
            return
        refuse(bool(self.dhcp_start) and bool(self.dhcp_end), f"{field}.dhcp", "Give both ends of the DHCP range.")
        try:
            start, end = ipaddress.ip_address(str(self.dhcp_start)), ipaddress.ip_address(str(self.dhcp_end))
        except ValueError:
            raise NetworkSpecRefused(f"The DHCP range must be two {name} addresses.", field=f"{field}.dhcp") from None
        refuse(
            start in net and end in net,
            f"{field}.dhcp",
            f"The DHCP range {start}–{end} must be inside the subnet {net}.",
        )
        low, high, gateway = int(start), int(end), int(address)  # same version: both are inside net
        refuse(low <= high, f"{field}.dhcp", f"The DHCP range starts after it ends ({start} > {end}).")
        if version == 4:
            refuse(
                int(net.network_address) < low and high < int(net.broadcast_address),
                f"{field}.dhcp",
                f"The DHCP range cannot include the subnet's own or broadcast address "
                f"({net.network_address}, {net.broadcast_address}).",
            )
        else:
            refuse(
                int(net.network_address) < low,
                f"{field}.dhcp",
                f"The DHCP range cannot include the subnet's own address {net.network_address} (its routers' anycast).",
            )
            # libvirt refuses a DHCPv6 range whose ends differ above their last 16 bits ("too large (> 65535)").
            refuse(
                low >> 16 == high >> 16,
                f"{field}.dhcp",
                f"The DHCPv6 range {start}–{end} is too large for libvirt: its ends may differ only in the last "
                f"group (at most 65536 addresses, such as {start}–{ipaddress.IPv6Address(low | 0xFFFF)}).",
            )
        refuse(
            not low <= gateway <= high,
            f"{field}.dhcp",
            f"The DHCP range {start}–{end} includes the gateway {address}.",
        )

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_interface(f"{self.address}/{self.prefix}").network


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    """A new network. Which fields apply depends on ``mode``:

    - nat, route, isolated: ``ipv4`` (required for nat and route), ``ipv6``, ``bridge_name`` (optional:
      libvirt picks virbrN), ``stp``, ``delay``; ``forward_dev`` for nat and route (optional);
    - bridge, openvswitch: ``bridge_name`` (the host's bridge, required);
    - macvtap: ``forward_dev`` (the host NIC, required).
    """

    name: str
    mode: NetworkMode
    ipv4: IpSpec | None = None
    ipv6: IpSpec | None = None
    bridge_name: str | None = None
    stp: bool = True
    delay: int = 0
    forward_dev: str | None = None
    portgroups: tuple[Portgroup, ...] = ()
    bandwidth: Bandwidth | None = None

    def __post_init__(self) -> None:
        check_network_name(self.name)
        refuse(self.mode in NETWORK_MODES, "mode", f"Choose a mode: {', '.join(NETWORK_MODES)}.")
        own = self.mode in OWN_BRIDGE_MODES
        if own:
            self._check_own_bridge()
        else:
            refuse(
                self.ipv4 is None and self.ipv6 is None,
                "ipv4",
                self._not_here("IP addresses or DHCP: the LAN's router gives them"),
            )
            refuse(
                self.stp is True and self.delay == 0,
                "bridge.stp",
                self._not_here("STP or forward delay settings: they belong to the host's bridge"),
            )
        if self.mode in HOST_BRIDGE_MODES:
            check_ifname(self.bridge_name, "bridge.name", "host bridge's name")
            refuse(self.forward_dev is None, "forward_dev", self._not_here("a forward device"))
        if self.mode == "macvtap":
            check_ifname(self.forward_dev, "forward_dev", "host NIC (e.g. eth0)")
            refuse(
                self.bridge_name is None,
                "bridge.name",
                self._not_here("a bridge: guests share the NIC through macvtap"),
            )
        self._check_portgroups()
        if self.bandwidth is not None:
            refuse(
                self.mode in BANDWIDTH_MODES,
                "bandwidth",
                f"libvirt has no network-wide bandwidth limit for {self.mode} networks; set it per portgroup instead.",
            )
            refuse(not self.bandwidth.empty, "bandwidth", "Give an inbound or outbound limit.")

    def _not_here(self, what: str) -> str:
        return f"A {self.mode} network takes no {what}."

    def _check_own_bridge(self) -> None:
        if self.mode in ("nat", "route"):
            refuse(self.ipv4 is not None, "ipv4", f"A {self.mode} network needs an IPv4 subnet.")
        if self.ipv4 is not None:
            self.ipv4.check("ipv4", 4)
        if self.ipv6 is not None:
            self.ipv6.check("ipv6", 6)
        if self.bridge_name is not None:
            check_ifname(self.bridge_name, "bridge.name", "bridge name")
        refuse(isinstance(self.stp, bool), "bridge.stp", "STP is on or off.")
        refuse(_whole(self.delay, 0, 30), "bridge.delay", "The forward delay is a whole number of seconds, 0 to 30.")
        if self.forward_dev is not None:
            refuse(
                self.mode != "isolated",
                "forward_dev",
                "An isolated network forwards nowhere: it takes no forward device.",
            )
            check_ifname(self.forward_dev, "forward_dev", "forward device")

    def _check_portgroups(self) -> None:
        refuse(isinstance(self.portgroups, tuple), "portgroups", "Portgroups must be a tuple.")
        names: set[str] = set()
        defaults = 0
        for index, group in enumerate(self.portgroups):
            field = f"portgroups.{index}"
            refuse(
                isinstance(group.name, str) and _PORTGROUP.fullmatch(group.name) is not None,
                f"{field}.name",
                f"A portgroup name may use letters, digits, '-', '_' and '.'; got {group.name!r}.",
            )
            refuse(group.name not in names, f"{field}.name", f"There are two portgroups named {group.name}.")
            names.add(group.name)
            defaults += 1 if group.default else 0
            refuse(defaults <= 1, f"{field}.default", "Only one portgroup can be the default.")
            if group.vlan is not None:
                refuse(
                    self.mode in VLAN_MODES,
                    f"{field}.vlan",
                    f"libvirt applies VLAN tags only on Open vSwitch networks (and SR-IOV ones); a {self.mode} "
                    "network would not tag its guests' traffic.",
                )
                group.vlan.check(f"{field}.vlan")
            if group.bandwidth is not None:
                refuse(not group.bandwidth.empty, f"{field}.bandwidth", "Give an inbound or outbound limit.")


def check_network_xml(xml: str) -> str:
    """Check network XML a user typed: well formed, no DTD or entities, a ``<network>`` with a valid
    name. Returns the network's name; libvirt checks the rest when it is defined."""
    require(isinstance(xml, str) and bool(xml.strip()), "The network XML is empty.")
    check_text("Network XML", xml, max_length=65536, one_line=False)
    root = parse(xml)
    require(root.tag == "network", f"The XML must describe a <network>, not <{root.tag}>.")
    name = root.findtext("name")
    require(name is not None, "The network XML needs a <name>.")
    assert name is not None
    check_network_name(name.strip())
    return name.strip()
