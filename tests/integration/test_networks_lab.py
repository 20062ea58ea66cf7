"""Bad input for a new network on the real lab: a clear message, and nothing changes (issue 8).

Each refused request must leave libvirt as it was (``virsh net-list --all``) and kvmweb's rows too.
Other test runs may share the lab, so "as it was" means: the refused network does not exist, and
every network that existed before is still there in the same state.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from kvmweb.virt.xml import NicSpec
from networks.models import Network
from tests.lab.hosts import LabHost
from tests.lab.network import (
    BOOT_TIMEOUT,
    LabNet,
    NetGuestFactory,
    NetworkApi,
    own_bridge_body,
    random_mac,
    unique_network_name,
)
from tests.lab.virsh import virsh

pytestmark = pytest.mark.integration


def nat_body(name: str, subnet: ipaddress.IPv4Network, **extra: Any) -> dict[str, Any]:
    return own_bridge_body(name, "nat", subnet, **extra)


def net_list(lab: LabHost) -> dict[str, str]:
    """``virsh net-list --all``: each network's row (state, autostart, persistent), by name."""
    rows = {}
    for line in virsh(lab.uri, "net-list", "--all", timeout=30).splitlines():
        if line.strip():
            name, rest = line.split(None, 1)
            rows[name] = " ".join(rest.split())
    return rows


def refused_and_unchanged(api: NetworkApi, body: dict[str, Any]) -> str:
    """POST the body; it must be refused and change nothing. Returns the message."""
    before, rows_before = net_list(api.lab), list(Network.objects.filter(host=api.host).values_list("name", "active"))
    message = api.refused(body)
    after = net_list(api.lab)
    assert body["name"] not in after, f"{body['name']} was defined: {after[body['name']]}"
    assert {name: after.get(name) for name in before} == before
    assert list(Network.objects.filter(host=api.host).values_list("name", "active")) == rows_before
    return message


def test_a_subnet_overlapping_another_network_is_refused_naming_it(network_api: NetworkApi) -> None:
    first = unique_network_name("first")
    subnet = network_api.free_subnet()
    network_api.create(nat_body(first, subnet, start=True))
    second = unique_network_name("second")
    upper_half = list(subnet.subnets(new_prefix=25))[1]  # e.g. 10.1.2.128/25 inside 10.1.2.0/24
    message = refused_and_unchanged(network_api, nat_body(second, upper_half))
    assert "overlaps" in message and first in message, message


@pytest.mark.parametrize(
    "dhcp",
    [
        pytest.param({"start": "192.0.2.10", "end": "192.0.2.20"}, id="range-in-another-subnet"),
        pytest.param({"start": "{net}.100", "end": "{other}.20"}, id="range-end-outside"),
    ],
)
def test_a_dhcp_range_outside_the_subnet_is_refused(network_api: NetworkApi, dhcp: dict[str, str]) -> None:
    name = unique_network_name("range")
    subnet = network_api.free_subnet()
    prefix = str(subnet.network_address).rsplit(".", 1)[0]
    other = str(subnet.network_address + 256).rsplit(".", 1)[0]
    body = nat_body(name, subnet, start=True)
    body["ipv4"]["dhcp"] = {key: value.format(net=prefix, other=other) for key, value in dhcp.items()}

    message = refused_and_unchanged(network_api, body)
    assert "range" in message.lower() and str(subnet) in message, message


def test_a_bridge_name_the_host_already_has_is_refused(network_api: NetworkApi, lab_net: LabNet) -> None:
    taken = unique_network_name("taken")
    existing = network_api.create(nat_body(taken, network_api.free_subnet(), start=True))
    assert existing.bridge

    for bridge in (lab_net.bridge, existing.bridge):  # the host's public bridge; another network's bridge
        name = unique_network_name("bridge")
        body = nat_body(name, network_api.free_subnet(), bridge={"name": bridge}, start=True)
        message = refused_and_unchanged(network_api, body)
        assert bridge in message and "taken" in message, message


@pytest.mark.parametrize("tag", [4096, 5000, -1])
def test_an_invalid_vlan_id_is_refused(network_api: NetworkApi, lab_net: LabNet, tag: int) -> None:
    name = unique_network_name("vlan")
    body = {
        "name": name,
        "mode": "openvswitch",
        "bridge": {"name": lab_net.ovs_bridge},
        "portgroups": [{"name": "bad", "default": True, "vlan": {"tags": [tag]}}],
        "start": True,
    }
    message = refused_and_unchanged(network_api, body)
    assert "VLAN" in message and str(tag) in message, message


def test_undefine_is_refused_while_a_running_guest_uses_the_network_naming_it(
    network_api: NetworkApi, net_guests: NetGuestFactory
) -> None:
    name = unique_network_name("busy")
    busy = network_api.create(nat_body(name, network_api.free_subnet(), start=True))
    guest = net_guests("busy", NicSpec(network=name, mac=random_mac()))
    guest.wait_for_marker(BOOT_TIMEOUT)
    network_api.refresh_inventory()  # the VM's row, as the events process would write it

    before = net_list(network_api.lab)
    response = network_api.post(f"/api/v1/networks/{busy.pk}/actions/undefine/")
    if response.status_code == 202:
        op = network_api.wait(response)
        assert op.status == "failed"
        message = str(op.error)
    else:
        assert response.status_code == 409, response.content
        message = response.json()["error"]["message"]
    assert guest.name in message, message
    assert net_list(network_api.lab)[name] == before[name]
    assert guest.is_running()
