"""Golden-file tests for the network XML builder (one per mode), the spec's refusals, and reading XML back.

Set KVMWEB_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change, then review the
diff like any other code change.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kvmweb import virt
from kvmweb.virt.xml.bandwidth import Bandwidth, BandwidthRefused, Rate
from kvmweb.virt.xml.network_spec import (
    IpSpec,
    NetworkSpec,
    NetworkSpecRefused,
    Portgroup,
    Vlan,
    check_network_xml,
)
from kvmweb.virt.xml.network_xml import build_network_xml, network_info

GOLDEN = Path(__file__).parent / "golden" / "networks"
LIMIT = Bandwidth(inbound=Rate(1000, 2000, 1024), outbound=Rate(500))
NAT = NetworkSpec(
    name="labnat",
    mode="nat",
    ipv4=IpSpec("10.77.0.1", 24, "10.77.0.100", "10.77.0.199"),
    ipv6=IpSpec("fd77::1", 64),
    bridge_name="virbr77",
    bandwidth=LIMIT,
    portgroups=(Portgroup("slow", bandwidth=Bandwidth(outbound=Rate(100, 200, 64))),),
)

CASES = {
    "network_nat.xml": NAT,
    "network_route.xml": NetworkSpec(
        name="labroute", mode="route", ipv4=IpSpec("10.78.0.1", 24, "10.78.0.10", "10.78.0.20"), forward_dev="eth0",
        stp=False, delay=2,
    ),
    "network_isolated.xml": NetworkSpec(
        name="private", mode="isolated", ipv4=IpSpec("10.79.0.1", 24, "10.79.0.2", "10.79.0.254")
    ),
    "network_isolated_bare.xml": NetworkSpec(name="wire", mode="isolated"),
    "network_bridge.xml": NetworkSpec(name="lan", mode="bridge", bridge_name="br0", bandwidth=LIMIT),
    "network_macvtap.xml": NetworkSpec(name="direct", mode="macvtap", forward_dev="eth0"),
    "network_openvswitch.xml": NetworkSpec(
        name="ovs",
        mode="openvswitch",
        bridge_name="ovsbr0",
        portgroups=(
            Portgroup("v10", default=True, vlan=Vlan((10,))),
            Portgroup("v20", vlan=Vlan((20,)), bandwidth=Bandwidth(inbound=Rate(1000))),
            Portgroup("trunk", vlan=Vlan((10, 20, 30), trunk=True, native=10)),
        ),
    ),
}  # fmt: skip


@pytest.mark.parametrize("golden_name", sorted(CASES))
def test_built_xml_matches_golden_file(golden_name: str) -> None:
    built = build_network_xml(CASES[golden_name])
    golden = GOLDEN / golden_name
    if os.environ.get("KVMWEB_UPDATE_GOLDEN") == "1":
        golden.write_text(built, encoding="utf-8")
    assert built == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("golden_name", sorted(CASES))
def test_built_xml_reads_back_as_its_mode(golden_name: str) -> None:
    spec = CASES[golden_name]
    info = network_info(build_network_xml(spec))
    assert info.mode == spec.mode
    assert info.portgroups == spec.portgroups
    assert info.bandwidth == spec.bandwidth


def test_read_back_gives_subnets_dhcp_and_bridge_settings() -> None:
    info = network_info(build_network_xml(NAT))
    assert info.bridge == "virbr77" and info.stp is True and info.delay == 0
    assert [(ip.family, ip.subnet, ip.dhcp_ranges) for ip in info.ips] == [
        ("ipv4", "10.77.0.0/24", (("10.77.0.100", "10.77.0.199"),)),
        ("ipv6", "fd77::/64", ()),
    ]


def test_libvirts_default_network_with_a_netmask_reads_back() -> None:
    xml = (
        "<network><name>default</name><forward mode='nat'/><bridge name='virbr0' stp='on' delay='0'/>"
        "<ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.254'/>"
        "</dhcp></ip></network>"
    )
    info = network_info(xml)
    assert info.mode == "nat" and info.ips[0].subnet == "192.168.122.0/24" and info.ips[0].prefix == 24


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "name": (dict(name="bad name"), "name"),
    "nat without subnet": (dict(ipv4=None), "ipv4"),
    "dhcp outside subnet": (dict(ipv4=IpSpec("10.77.0.1", 24, "10.78.0.10", "10.78.0.20")), "ipv4.dhcp"),
    "dhcp includes gateway": (dict(ipv4=IpSpec("10.77.0.1", 24, "10.77.0.1", "10.77.0.20")), "ipv4.dhcp"),
    "dhcp backwards": (dict(ipv4=IpSpec("10.77.0.1", 24, "10.77.0.50", "10.77.0.20")), "ipv4.dhcp"),
    "dhcp broadcast": (dict(ipv4=IpSpec("10.77.0.1", 24, "10.77.0.10", "10.77.0.255")), "ipv4.dhcp"),
    "gateway is subnet address": (dict(ipv4=IpSpec("10.77.0.0", 24)), "ipv4.address"),
    "not an address": (dict(ipv4=IpSpec("10.77.0.999", 24)), "ipv4.address"),
    "v6 in v4": (dict(ipv4=IpSpec("fd00::1", 64)), "ipv4.address"),
    "prefix": (dict(ipv4=IpSpec("10.77.0.1", 31)), "ipv4.prefix"),
    "bridge name too long": (dict(bridge_name="a-very-long-bridge-name"), "bridge.name"),
    "delay": (dict(delay=99), "bridge.delay"),
    "vlan on nat": (dict(portgroups=(Portgroup("v", vlan=Vlan((10,))),)), "portgroups.0.vlan"),
    "duplicate portgroup": (dict(portgroups=(Portgroup("a"), Portgroup("a"))), "portgroups.1.name"),
    "two defaults": (dict(portgroups=(Portgroup("a", True), Portgroup("b", True))), "portgroups.1.default"),
    "empty bandwidth": (dict(bandwidth=Bandwidth()), "bandwidth"),
    "empty portgroup bandwidth": (dict(portgroups=(Portgroup("a", bandwidth=Bandwidth()),)), "portgroups.0.bandwidth"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_nat_values_are_refused_naming_the_field(case: str) -> None:
    changes, field = BAD[case]
    with pytest.raises(NetworkSpecRefused) as refused:
        replace(NAT, **changes)
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("numbers", "field"), [((0,), "average"), ((100, 50), "peak"), ((100, None, -1), "burst"), ((2**32,), "average")]
)
def test_a_bad_rate_is_refused_when_made_naming_its_field(numbers: tuple[Any, ...], field: str) -> None:
    """Networks, portgroups and NICs share the type: the caller puts the field after where the rate sits."""
    with pytest.raises(BandwidthRefused) as refused:
        Rate(*numbers)
    assert refused.value.field == field


OVS = CASES["network_openvswitch.xml"]
BAD_OVS: dict[str, tuple[dict[str, Any], str]] = {
    "vlan id": (dict(portgroups=(Portgroup("v", vlan=Vlan((4096,))),)), "portgroups.0.vlan.tags"),
    "several tags without trunk": (dict(portgroups=(Portgroup("v", vlan=Vlan((1, 2))),)), "portgroups.0.vlan.tags"),
    "native not a tag": (dict(portgroups=(Portgroup("v", vlan=Vlan((1, 2), True, 3)),)), "portgroups.0.vlan.native"),
    "network bandwidth": (dict(bandwidth=LIMIT), "bandwidth"),
    "ip": (dict(ipv4=IpSpec("10.0.0.1", 24)), "ipv4"),
    "no bridge": (dict(bridge_name=None), "bridge.name"),
    "stp": (dict(stp=False), "bridge.stp"),
}


@pytest.mark.parametrize("case", sorted(BAD_OVS))
def test_bad_openvswitch_values_are_refused_naming_the_field(case: str) -> None:
    changes, field = BAD_OVS[case]
    with pytest.raises(NetworkSpecRefused) as refused:
        replace(OVS, **changes)
    assert refused.value.field == field


def test_macvtap_needs_its_nic_and_takes_no_network_wide_bandwidth() -> None:
    macvtap = CASES["network_macvtap.xml"]
    with pytest.raises(NetworkSpecRefused, match="host NIC"):
        replace(macvtap, forward_dev=None)
    with pytest.raises(NetworkSpecRefused, match="no network-wide bandwidth"):
        replace(macvtap, bandwidth=LIMIT)


def test_raw_xml_check_refuses_entities_and_other_roots() -> None:
    assert check_network_xml(build_network_xml(NAT)) == "labnat"
    with pytest.raises(virt.UnsafeXML):
        check_network_xml('<!DOCTYPE n [<!ENTITY x "y">]><network><name>&x;</name></network>')
    with pytest.raises(virt.InvalidArgument, match="<network>"):
        check_network_xml("<pool><name>x</name></pool>")
    with pytest.raises(virt.InvalidArgument, match="Network name"):
        check_network_xml("<network><name>a b</name></network>")


# IPv6 with DHCPv6 (a range, for reservations)

NAT6 = replace(NAT, ipv6=IpSpec("fd77::1", 64, "fd77::100", "fd77::1ff"))


def test_a_dhcpv6_range_is_built_in_the_ipv6_ip_and_reads_back() -> None:
    info = network_info(build_network_xml(NAT6))

    assert [(ip.family, ip.subnet, ip.dhcp_ranges, ip.has_dhcp) for ip in info.ips] == [
        ("ipv4", "10.77.0.0/24", (("10.77.0.100", "10.77.0.199"),), True),
        ("ipv6", "fd77::/64", (("fd77::100", "fd77::1ff"),), True),
    ]
    assert '<ip family="ipv6" address="fd77::1" prefix="64">' in build_network_xml(NAT6)


def test_an_ipv6_reservation_reads_back_with_its_duid_and_no_mac() -> None:
    xml = (
        "<network><name>n</name><ip family='ipv6' address='fd77::1' prefix='64'><dhcp>"
        "<range start='fd77::100' end='fd77::1ff'/><host id='00:03:00:01:52:54:00:AA:00:01' name='a' ip='fd77::10'/>"
        "</dhcp></ip></network>"
    )
    assert network_info(xml).ips[0].dhcp_hosts == (("", "fd77::10", "a", "00:03:00:01:52:54:00:aa:00:01"),)


BAD6: dict[str, tuple[IpSpec, str]] = {
    "outside the prefix": (IpSpec("fd77::1", 64, "fd78::100", "fd78::1ff"), "must be inside the subnet fd77::/64"),
    "includes the gateway": (IpSpec("fd77::1", 64, "fd77::1", "fd77::ff"), "includes the gateway fd77::1"),
    "includes the subnet's address": (IpSpec("fd77::1", 64, "fd77::", "fd77::0"), "the subnet's own address fd77::"),
    "backwards": (IpSpec("fd77::1", 64, "fd77::200", "fd77::100"), "starts after it ends"),
    "too large for libvirt": (IpSpec("fd77::1", 64, "fd77::100", "fd77::1:1ff"), "differ only in the last group"),
    "one end only": (IpSpec("fd77::1", 64, "fd77::100", None), "Give both ends"),
    "ipv4 ends": (IpSpec("fd77::1", 64, "10.77.0.100", "10.77.0.199"), "must be inside the subnet"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD6))
def test_a_bad_dhcpv6_range_is_refused_naming_the_field(case: str) -> None:
    ipv6, words = BAD6[case]
    with pytest.raises(NetworkSpecRefused) as refused:
        replace(NAT, ipv6=ipv6)
    assert refused.value.field == "ipv6.dhcp" and words in refused.value.message


def test_the_largest_dhcpv6_range_libvirt_takes_is_accepted() -> None:
    spec = replace(NAT, ipv6=IpSpec("fd77::1", 64, "fd77::1:0", "fd77::1:ffff"))
    assert network_info(build_network_xml(spec)).ips[1].dhcp_ranges == (("fd77::1:0", "fd77::1:ffff"),)
