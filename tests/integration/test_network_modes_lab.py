"""Each network mode used by real guests (issue 8): networks made through the API, tiny guests on them.

Everything runs inside the lab's network namespaces (scripts/lab/net.sh): libvirtd and its networks
in ``kvmweb-lab``, the "upstream LAN" (198.51.100.1 and its own DHCP server) in ``kvmweb-up``, joined
through ``br0`` over ``up0``, the lab host's "physical NIC". The guests print their DHCP address on
the serial console and run busybox ``ping`` through the guest agent (tests/lab/network.py).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from kvmweb.virt.xml import NicSpec
from networks.models import Network
from tests.lab.network import (
    LabNet,
    NetGuestFactory,
    NetworkApi,
    ovs_port_tag,
    own_bridge_body,
    random_mac,
    set_static_address,
    unique_network_name,
    unreachable,
    upstream_leases,
    upstream_pings,
    upstream_route,
    wait_for_nic_address,
    wait_until_reachable,
)

pytestmark = pytest.mark.integration


def started(api: NetworkApi, body: dict[str, Any]) -> Network:
    """Create the network through the API; it must run, in the mode asked for, on the bridge asked for."""
    network = api.create(body)
    detail = api.detail(network)
    assert (detail["active"], detail["mode"]) == (True, body["mode"]), detail
    if "bridge" in body:
        assert detail["bridge"] == body["bridge"]["name"], detail
    return network


def in_range(address: str | None, start: str, end: str) -> bool:
    assert address is not None
    return ipaddress.IPv4Address(start) <= ipaddress.IPv4Address(address) <= ipaddress.IPv4Address(end)


def test_nat_guest_gets_a_lease_in_the_range_that_kvmweb_shows_and_reaches_upstream(
    network_api: NetworkApi, net_guests: NetGuestFactory, lab_net: LabNet
) -> None:
    name = unique_network_name("nat")
    body = own_bridge_body(name, "nat", network_api.free_subnet())
    network = started(network_api, body)
    mac = random_mac()
    guest = net_guests("nat", NicSpec(network=name, mac=mac))

    nic = wait_for_nic_address(guest, mac)
    assert in_range(nic.ip, body["ipv4"]["dhcp"]["start"], body["ipv4"]["dhcp"]["end"]), nic
    assert nic.router == body["ipv4"]["address"]
    lease = network_api.wait_for_lease(network, mac)
    assert (lease["ip"], lease["type"], lease["hostname"]) == (nic.ip, "ipv4", guest.name)
    assert lease["expires"]

    guest.wait_for_agent(60)
    wait_until_reachable(guest, lab_net.upstream_ip)


def test_isolated_guests_reach_each_other_but_not_upstream(
    network_api: NetworkApi, net_guests: NetGuestFactory, lab_net: LabNet
) -> None:
    name = unique_network_name("iso")
    body = own_bridge_body(name, "isolated", network_api.free_subnet())
    started(network_api, body)
    macs = (random_mac(), random_mac())
    guests = [net_guests(f"iso{i}", NicSpec(network=name, mac=mac)) for i, mac in enumerate(macs)]
    one, two = (wait_for_nic_address(guest, mac) for guest, mac in zip(guests, macs, strict=True))
    assert one.ip != two.ip

    guests[0].wait_for_agent(60)
    assert two.ip is not None
    wait_until_reachable(guests[0], two.ip)
    # Even with a default route through the network's gateway, the host forwards nothing out.
    code, out = guests[0].run("/sbin/ip", "route", "replace", "default", "via", body["ipv4"]["address"])
    assert code == 0, out
    assert unreachable(guests[0], lab_net.upstream_ip)


def test_public_bridge_guest_gets_its_address_from_the_upstream_dhcp_server(
    network_api: NetworkApi, net_guests: NetGuestFactory, lab_net: LabNet
) -> None:
    name = unique_network_name("pub")
    network = started(network_api, {"name": name, "mode": "bridge", "bridge": {"name": lab_net.bridge}, "start": True})
    mac = random_mac()
    guest = net_guests("pub", NicSpec(network=name, mac=mac))

    nic = wait_for_nic_address(guest, mac)
    assert nic.ip is not None and lab_net.in_upstream_range(nic.ip), nic
    assert nic.router == lab_net.upstream_ip
    assert upstream_leases(lab_net).get(mac) == nic.ip
    # libvirt runs no DHCP server for a bridged network: kvmweb shows no lease there.
    assert network_api.leases(network) == []
    guest.wait_for_agent(60)
    wait_until_reachable(guest, lab_net.upstream_ip)


def test_routed_guest_gets_a_lease_from_libvirt_and_upstream_reaches_its_own_address(
    network_api: NetworkApi, net_guests: NetGuestFactory, lab_net: LabNet
) -> None:
    name = unique_network_name("rt")
    subnet = network_api.free_subnet()
    body = own_bridge_body(name, "route", subnet)
    network = started(network_api, body)
    mac = random_mac()
    guest = net_guests("rt", NicSpec(network=name, mac=mac))

    nic = wait_for_nic_address(guest, mac)
    assert in_range(nic.ip, body["ipv4"]["dhcp"]["start"], body["ipv4"]["dhcp"]["end"]), nic
    assert nic.router == body["ipv4"]["address"]
    assert nic.ip is not None and network_api.wait_for_lease(network, mac)["ip"] == nic.ip
    # No address translation: the upstream router reaches the guest's own address once it routes
    # the subnet to the lab host (a NAT network's firewall would refuse these new connections).
    with upstream_route(lab_net, subnet):
        upstream_pings(lab_net, nic.ip)


def test_macvtap_guest_gets_its_address_from_the_upstream_dhcp_server(
    network_api: NetworkApi, net_guests: NetGuestFactory, lab_net: LabNet
) -> None:
    name = unique_network_name("mvt")
    network = started(network_api, {"name": name, "mode": "macvtap", "forward_dev": lab_net.macvtap_nic, "start": True})
    mac = random_mac()
    guest = net_guests("mvt", NicSpec(network=name, mac=mac))

    nic = wait_for_nic_address(guest, mac)
    assert nic.ip is not None and lab_net.in_upstream_range(nic.ip), nic
    assert nic.router == lab_net.upstream_ip
    assert upstream_leases(lab_net).get(mac) == nic.ip
    assert network_api.leases(network) == []  # libvirt runs no DHCP server for a macvtap network
    guest.wait_for_agent(60)
    wait_until_reachable(guest, lab_net.upstream_ip)


def test_guest_booted_after_its_reservation_gets_the_reserved_ip(
    network_api: NetworkApi, net_guests: NetGuestFactory
) -> None:
    name = unique_network_name("res")
    subnet = network_api.free_subnet()
    network = started(network_api, own_bridge_body(name, "nat", subnet))
    mac = random_mac()
    reserved = str(list(subnet.hosts())[49])  # .50: outside the dynamic range (.64-.128)
    network_api.reserve(network, mac=mac, ip=reserved, name="reserved-guest")
    expected = {"family": "ipv4", "mac": mac, "duid": "", "ip": reserved, "name": "reserved-guest"}
    assert expected in network_api.get(f"/api/v1/networks/{network.pk}/reservations/")["reservations"]

    guest = net_guests("res", NicSpec(network=name, mac=mac))
    assert wait_for_nic_address(guest, mac).ip == reserved
    assert network_api.wait_for_lease(network, mac)["ip"] == reserved


def test_ovs_guests_on_one_vlan_tag_reach_each_other_and_not_across_tags(
    network_api: NetworkApi, net_guests: NetGuestFactory, lab_net: LabNet
) -> None:
    name = unique_network_name("ovs")
    started(
        network_api,
        {
            "name": name,
            "mode": "openvswitch",
            "bridge": {"name": lab_net.ovs_bridge},
            "portgroups": [
                {"name": "v10", "default": True, "vlan": {"tags": [10]}},
                {"name": "v20", "vlan": {"tags": [20]}},
            ],
            "start": True,
        },
    )
    # No DHCP on an Open vSwitch network: the guests get static addresses on one subnet.
    plan = {"a": ("v10", "10.10.0.11"), "b": ("v10", "10.10.0.12"), "c": ("v20", "10.10.0.13")}
    macs = {key: random_mac() for key in plan}
    guests = {
        key: net_guests(f"ovs{key}", NicSpec(network=name, portgroup=group, mac=macs[key]))
        for key, (group, _) in plan.items()
    }
    for key, guest in guests.items():
        guest.wait_for_marker(180)
        guest.wait_for_agent(60)
        set_static_address(guest, macs[key], f"{plan[key][1]}/24")
    assert {key: ovs_port_tag(guest, macs[key]) for key, guest in guests.items()} == {"a": 10, "b": 10, "c": 20}

    wait_until_reachable(guests["a"], plan["b"][1])
    assert unreachable(guests["a"], plan["c"][1])
    assert unreachable(guests["c"], plan["b"][1])
