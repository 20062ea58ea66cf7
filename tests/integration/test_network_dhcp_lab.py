"""DHCP reservations and leases for real: API → Redis → a Celery worker → the lab's libvirtd (netns kvmweb-lab).

A NAT network is defined and started through the product; a reservation is added to it while it runs and
shows in ``virsh net-dumpxml`` at once, with the same dnsmasq process (no restart). A tiny guest whose NIC has
the reserved MAC then boots, gets the reserved address, and its lease appears in the product's API once the
server-side lease refresh (the beat task's service, called here as the beat would) has read it.
Everything runs inside the lab's network namespace; the guest and the network are removed afterwards.
"""

from __future__ import annotations

import uuid

import pytest

from kvmweb.virt.xml import NicSpec
from kvmweb.virt.xml.safe import parse
from tests.lab.hosts import LabHost
from tests.lab.network import (
    NetGuestFactory,
    NetworkApi,
    random_mac,
    wait_for_nic_address,
)
from tests.lab.virsh import virsh

pytestmark = pytest.mark.integration


def dhcp_hosts(lab: LabHost, name: str, *, inactive: bool = False) -> list[dict[str, str]]:
    """The <host> reservations of the network as libvirt reports it (running, or its definition)."""
    xml = virsh(lab.uri, "net-dumpxml", name, *(["--inactive"] if inactive else []), timeout=30)
    return [dict(host.attrib) for host in parse(xml).findall("ip/dhcp/host")]


def dnsmasq_pid(lab: LabHost, name: str) -> str:
    return lab.host_path(f"/run/libvirt/network/{name}.pid").read_text().strip()


def test_a_reservation_on_a_running_network_gives_a_guest_its_address_and_the_lease_shows(
    network_api: NetworkApi,
    lab_host: LabHost,
    lab_networks: list[str],  # the network is removed after the guests
    net_guests: NetGuestFactory,
) -> None:
    api = network_api
    name = f"it-dhcp-{uuid.uuid4().hex[:6]}"
    lab_networks.append(name)
    subnet = str(api.free_subnet().network_address).rsplit(".", 1)[0]
    network = api.create(
        {
            "name": name,
            "mode": "nat",
            "ipv4": {
                "address": f"{subnet}.1",
                "prefix": 24,
                "dhcp": {"start": f"{subnet}.100", "end": f"{subnet}.199"},
            },
            "start": True,
        }
    )
    assert network.active
    pid = dnsmasq_pid(lab_host, name)
    mac, reserved = random_mac(), f"{subnet}.50"  # outside the range, inside the subnet: libvirt allows it

    api.reserve(network, mac=mac, ip=reserved, name="it-reserved")

    wanted = {"mac": mac, "ip": reserved, "name": "it-reserved"}
    assert wanted in dhcp_hosts(lab_host, name)
    assert wanted in dhcp_hosts(lab_host, name, inactive=True)
    assert dnsmasq_pid(lab_host, name) == pid  # told with a signal, not restarted
    assert api.get(f"/api/v1/networks/{network.pk}/reservations/") == {"reservations": [wanted]}
    refused = api.post(f"/api/v1/networks/{network.pk}/reservations/", {"mac": random_mac(), "ip": reserved})
    assert refused.status_code == 409 and "is already reserved" in refused.json()["error"]["details"]["ip"]

    guest = net_guests("dhcp", NicSpec(network=name, mac=mac))
    address = wait_for_nic_address(guest, mac)

    assert address.ip == reserved
    assert address.router == f"{subnet}.1"

    lease = api.wait_for_lease(network, mac)  # runs the beat's lease refresh until the API shows it
    assert (lease["ip"], lease["type"], lease["prefix"], lease["hostname"]) == (reserved, "ipv4", 24, "it-reserved")
    assert lease["expires"] is not None
