"""The DHCP adapter on libvirt's test driver: reservations through networkUpdate, leases' shape.

The test driver implements ``virNetworkUpdate`` but not ``virNetworkGetDHCPLeases`` (it answers "not
supported"): reading real leases is covered in tests/integration/test_network_dhcp_lab.py.
"""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kvmweb import virt
from kvmweb.virt import network_dhcp as dhcp
from kvmweb.virt.network_dhcp import DhcpReservation

NET_UUID = "6d0c1a55-5d4e-4d0f-9a53-0c5e6b1f0a11"
PLAIN_UUID = "6d0c1a55-5d4e-4d0f-9a53-0c5e6b1f0a12"
FIRST6 = DhcpReservation(mac="", ip="fd91::10", name="first6", duid="00:03:00:01:52:54:00:aa:00:01")


def dhcp_node(path: Path) -> str:
    """A fake host with a NAT network that has IPv4 and IPv6 DHCP, one reservation in each, and one without DHCP."""
    node = ET.Element("node")
    net = ET.SubElement(node, "network")
    ET.SubElement(net, "name").text = "dhcpnet"
    ET.SubElement(net, "uuid").text = NET_UUID
    ET.SubElement(net, "forward", mode="nat")
    ET.SubElement(net, "bridge", name="virbr91")
    ip = ET.SubElement(net, "ip", address="10.91.0.1", netmask="255.255.255.0")
    server = ET.SubElement(ip, "dhcp")
    ET.SubElement(server, "range", start="10.91.0.100", end="10.91.0.199")
    ET.SubElement(server, "host", mac="52:54:00:aa:00:01", ip="10.91.0.10", name="first")
    ip6 = ET.SubElement(net, "ip", family="ipv6", address="fd91::1", prefix="64")
    server6 = ET.SubElement(ip6, "dhcp")
    ET.SubElement(server6, "range", start="fd91::100", end="fd91::1ff")
    ET.SubElement(server6, "host", id=FIRST6.duid, name=FIRST6.name, ip=FIRST6.ip)
    plain = ET.SubElement(node, "network")
    ET.SubElement(plain, "name").text = "plain"
    ET.SubElement(plain, "uuid").text = PLAIN_UUID
    ET.SubElement(plain, "bridge", name="virbr92")
    path.write_text(ET.tostring(node, encoding="unicode"), encoding="utf-8")
    return f"test://{path}"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[virt.HostTarget]:
    yield virt.HostTarget(dhcp_node(tmp_path / "dhcp-node.xml"))
    virt.close_all()


def _reservations(target: virt.HostTarget, family: str = "ipv4") -> tuple[DhcpReservation, ...]:
    config = dhcp.ip_dhcp(virt.get_network_record(target, NET_UUID).xml, family)
    assert config is not None
    return config.reservations


def test_the_ipv4_dhcp_section_is_read_from_the_network_xml(host: virt.HostTarget) -> None:
    config = dhcp.ip_dhcp(virt.get_network_record(host, NET_UUID).xml)

    assert config == dhcp.IpDhcp(
        family="ipv4",
        address="10.91.0.1",
        prefix=24,
        ranges=(dhcp.DhcpRange("10.91.0.100", "10.91.0.199"),),
        reservations=(DhcpReservation("52:54:00:aa:00:01", "10.91.0.10", "first"),),
    )
    assert str(config.subnet) == "10.91.0.0/24"


def test_a_network_without_dhcp_has_no_ipv4_dhcp_section(host: virt.HostTarget) -> None:
    assert dhcp.ip_dhcp(virt.get_network_record(host, PLAIN_UUID).xml) is None


def test_an_ipv6_only_dhcp_section_is_not_the_ipv4_one() -> None:
    xml = "<network><name>v6</name><ip family='ipv6' address='fd00::1' prefix='64'><dhcp/></ip></network>"
    assert dhcp.ip_dhcp(xml) is None


def test_a_prefix_attribute_gives_the_subnet() -> None:
    xml = "<network><name>p</name><ip address='10.1.2.1' prefix='16'><dhcp/></ip></network>"
    config = dhcp.ip_dhcp(xml)
    assert config is not None and str(config.subnet) == "10.1.0.0/16"


def test_the_host_element_is_built_with_its_attributes_escaped() -> None:
    assert dhcp.dhcp_host_xml(DhcpReservation("52:54:00:00:00:02", "10.0.0.2", "a&b")) == (
        '<host mac="52:54:00:00:00:02" ip="10.0.0.2" name="a&amp;b" />'
    )
    assert dhcp.dhcp_host_xml(DhcpReservation("52:54:00:00:00:02", "10.0.0.2")) == (
        '<host mac="52:54:00:00:00:02" ip="10.0.0.2" />'
    )


def test_a_reservation_added_to_a_running_network_shows_in_its_xml(host: virt.HostTarget) -> None:
    new = DhcpReservation("52:54:00:aa:00:02", "10.91.0.11", "second")

    xml = dhcp.add_dhcp_host(host, NET_UUID, new)

    config = dhcp.ip_dhcp(xml)
    assert config is not None and new in config.reservations
    assert new in _reservations(host)


def test_modifying_a_reservation_keeps_its_mac_and_changes_ip_and_name(host: virt.HostTarget) -> None:
    old = DhcpReservation("52:54:00:aa:00:01", "10.91.0.10", "first")
    new = DhcpReservation("52:54:00:aa:00:01", "10.91.0.20", "renamed")

    dhcp.modify_dhcp_host(host, NET_UUID, old, new)

    assert _reservations(host) == (new,)


def test_giving_a_reservation_a_new_mac_replaces_it(host: virt.HostTarget) -> None:
    old = DhcpReservation("52:54:00:aa:00:01", "10.91.0.10", "first")
    new = DhcpReservation("52:54:00:aa:00:09", "10.91.0.10", "first")

    dhcp.modify_dhcp_host(host, NET_UUID, old, new)

    assert _reservations(host) == (new,)


def test_a_deleted_reservation_is_gone(host: virt.HostTarget) -> None:
    dhcp.delete_dhcp_host(host, NET_UUID, DhcpReservation("52:54:00:aa:00:01", "10.91.0.10", "first"))

    assert _reservations(host) == ()


def test_deleting_a_reservation_the_network_lacks_is_refused(host: virt.HostTarget) -> None:
    with pytest.raises(virt.VirtError):
        dhcp.delete_dhcp_host(host, NET_UUID, DhcpReservation("52:54:00:aa:00:07", "10.91.0.77", "nobody"))
    assert len(_reservations(host)) == 1


def test_an_unknown_network_is_not_found(host: virt.HostTarget) -> None:
    with pytest.raises(virt.NotFound):
        dhcp.add_dhcp_host(host, str(uuidlib.uuid4()), DhcpReservation("52:54:00:aa:00:02", "10.91.0.11"))


def test_the_test_driver_cannot_list_leases(host: virt.HostTarget) -> None:
    with pytest.raises(virt.Unsupported):
        dhcp.get_dhcp_leases(host, NET_UUID)


@pytest.mark.parametrize(
    ("active", "persistent", "expected"),
    [(True, True, "live+config"), (False, True, "config"), (True, False, "live")],
)
def test_updates_reach_the_running_network_and_the_definition_that_exist(
    active: bool, persistent: bool, expected: str
) -> None:
    flags = dhcp.update_flags(active=active, persistent=persistent)
    live, config = 1, 2  # VIR_NETWORK_UPDATE_AFFECT_LIVE, VIR_NETWORK_UPDATE_AFFECT_CONFIG
    named = "+".join(name for bit, name in ((live, "live"), (config, "config")) if flags & bit)
    assert named == expected


def test_a_libvirt_lease_becomes_a_lease_with_a_utc_expiry() -> None:
    lease = dhcp.lease_from_libvirt(
        {"iface": "virbr91", "expirytime": 1_800_000_000, "type": 0, "mac": "52:54:00:AA:00:01", "iaid": None,
         "ipaddr": "10.91.0.150", "prefix": 24, "hostname": "guest", "clientid": "01:52:54:00:aa:00:01"}
    )  # fmt: skip

    assert lease == dhcp.DhcpLease(
        mac="52:54:00:aa:00:01",
        ip="10.91.0.150",
        prefix=24,
        hostname="guest",
        client_id="01:52:54:00:aa:00:01",
        expires=datetime.fromtimestamp(1_800_000_000, tz=UTC),
        type="ipv4",
    )


def test_a_lease_without_expiry_or_hostname_has_none_and_an_empty_name() -> None:
    lease = dhcp.lease_from_libvirt({"expirytime": 0, "type": 1, "mac": "52:54:00:aa:00:02", "ipaddr": "fd91::5",
                                     "prefix": 64, "hostname": None, "clientid": None})  # fmt: skip
    assert (lease.expires, lease.hostname, lease.client_id, lease.type) == (None, "", "", "ipv6")


# IPv6 reservations: matched by DUID or name, in the IPv6 <ip>'s <dhcp> (parentIndex 1 here; libvirt's -1 is IPv4)


def test_the_ipv6_dhcp_section_is_read_with_its_duid_reservations(host: virt.HostTarget) -> None:
    config = dhcp.ip_dhcp(virt.get_network_record(host, NET_UUID).xml, "ipv6")

    assert config == dhcp.IpDhcp(
        family="ipv6",
        address="fd91::1",
        prefix=64,
        ranges=(dhcp.DhcpRange("fd91::100", "fd91::1ff"),),
        reservations=(FIRST6,),
    )
    assert str(config.subnet) == "fd91::/64" and FIRST6.family == "ipv6" and FIRST6.key == "fd91::10"


def test_an_ipv6_host_element_has_no_mac() -> None:
    assert dhcp.dhcp_host_xml(FIRST6) == '<host id="00:03:00:01:52:54:00:aa:00:01" ip="fd91::10" name="first6" />'
    assert dhcp.dhcp_host_xml(DhcpReservation("", "fd91::11", "web")) == '<host ip="fd91::11" name="web" />'


def test_an_ipv6_reservation_is_added_to_the_ipv6_section_only(host: virt.HostTarget) -> None:
    by_duid = DhcpReservation("", "fd91::11", "", "00:03:00:01:52:54:00:aa:00:02")
    by_name = DhcpReservation("", "fd91::12", "web")

    dhcp.add_dhcp_host(host, NET_UUID, by_duid)
    dhcp.add_dhcp_host(host, NET_UUID, by_name)

    assert _reservations(host, "ipv6") == (FIRST6, by_duid, by_name)
    assert _reservations(host) == (DhcpReservation("52:54:00:aa:00:01", "10.91.0.10", "first"),)


def test_modifying_an_ipv6_reservation_keeps_its_address_and_changes_duid_and_name(host: virt.HostTarget) -> None:
    new = DhcpReservation("", FIRST6.ip, "renamed", "00:03:00:01:52:54:00:aa:00:09")

    dhcp.modify_dhcp_host(host, NET_UUID, FIRST6, new)

    assert _reservations(host, "ipv6") == (new,)


def test_giving_an_ipv6_reservation_a_new_address_replaces_it(host: virt.HostTarget) -> None:
    new = DhcpReservation("", "fd91::20", FIRST6.name, FIRST6.duid)

    dhcp.modify_dhcp_host(host, NET_UUID, FIRST6, new)

    assert _reservations(host, "ipv6") == (new,)


def test_a_deleted_ipv6_reservation_is_gone(host: virt.HostTarget) -> None:
    dhcp.delete_dhcp_host(host, NET_UUID, FIRST6)

    assert _reservations(host, "ipv6") == ()
    assert len(_reservations(host)) == 1
