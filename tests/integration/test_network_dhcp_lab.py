"""DHCP reservations and leases for real: API → Redis → a Celery worker → the lab's libvirtd (netns kvmweb-lab).

A NAT network is defined and started through the product; a reservation is added to it while it runs and
shows in ``virsh net-dumpxml`` at once, with the same dnsmasq process (no restart). A tiny guest whose NIC has
the reserved MAC then boots, gets the reserved address, and its lease appears in the product's API once the
server-side lease refresh (the beat task's service, called here as the beat would) has read it.
Everything runs inside the lab's network namespace; the guest and the network are removed afterwards.

IPv6 reservations (a NAT network with a DHCPv6 range) are added, changed and removed the same way; each shows in
libvirt's XML and in dnsmasq's hosts file at once, with the same dnsmasq process. The tiny guest has no DHCPv6
client, so no guest takes one.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

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


def dhcp_hosts(lab: LabHost, name: str, *, inactive: bool = False, family: str = "ipv4") -> list[dict[str, str]]:
    """The <host> reservations of one family as libvirt reports the network (running, or its definition)."""
    xml = virsh(lab.uri, "net-dumpxml", name, *(["--inactive"] if inactive else []), timeout=30)
    ips = [ip for ip in parse(xml).findall("ip") if (ip.get("family") or "ipv4") == family]
    return [dict(host.attrib) for ip in ips for host in ip.findall("dhcp/host")]


def dnsmasq_hosts(lab: LabHost, name: str) -> list[str]:
    """The lines of the hosts file libvirt writes for the network's dnsmasq (re-read on SIGHUP)."""
    return lab.host_path(f"/var/lib/libvirt/dnsmasq/{name}.hostsfile").read_text().split()


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
    listed = {"family": "ipv4", "duid": "", **wanted}
    assert api.get(f"/api/v1/networks/{network.pk}/reservations/") == {"reservations": [listed]}
    refused = api.post(f"/api/v1/networks/{network.pk}/reservations/", {"mac": random_mac(), "ip": reserved})
    assert refused.status_code == 409 and "is already reserved" in refused.json()["error"]["details"]["ip"]

    guest = net_guests("dhcp", NicSpec(network=name, mac=mac))
    address = wait_for_nic_address(guest, mac)

    assert address.ip == reserved
    assert address.router == f"{subnet}.1"

    lease = api.wait_for_lease(network, mac)  # runs the beat's lease refresh until the API shows it
    assert (lease["ip"], lease["type"], lease["prefix"], lease["hostname"]) == (reserved, "ipv4", 24, "it-reserved")
    assert lease["expires"] is not None


def test_ipv6_reservations_on_a_running_network_reach_dnsmasq_without_a_restart(
    network_api: NetworkApi, lab_host: LabHost, lab_networks: list[str]
) -> None:
    api = network_api
    name = f"it-dhcp6-{uuid.uuid4().hex[:6]}"
    lab_networks.append(name)
    subnet = str(api.free_subnet().network_address).rsplit(".", 1)[0]
    prefix6 = f"fd{random.randrange(256):02x}:{random.randrange(65536):x}:{random.randrange(65536):x}:1"
    dhcp6 = {"start": f"{prefix6}::100", "end": f"{prefix6}::1ff"}
    network = api.create(
        {
            "name": name,
            "mode": "nat",
            "ipv4": {"address": f"{subnet}.1", "prefix": 24},
            "ipv6": {"address": f"{prefix6}::1", "prefix": 64, "dhcp": dhcp6},
            "start": True,
        }
    )
    assert network.active
    pid = dnsmasq_pid(lab_host, name)
    base = f"/api/v1/networks/{network.pk}/reservations/"
    duid, address = f"00:03:00:01:{random_mac()}", f"{prefix6}::50"  # DUID-LL: type 3, Ethernet, a MAC

    api.finish(api.post(base, {"family": "ipv6", "duid": duid, "ip": address, "name": "it-six"}))

    wanted = {"id": duid, "name": "it-six", "ip": address}
    assert dhcp_hosts(lab_host, name, family="ipv6") == [wanted]
    assert dhcp_hosts(lab_host, name, family="ipv6", inactive=True) == [wanted]
    assert f"id:{duid},it-six,[{address}]" in dnsmasq_hosts(lab_host, name)
    assert dnsmasq_pid(lab_host, name) == pid  # told with a signal, not restarted
    listed = {"family": "ipv6", "mac": "", "duid": duid, "ip": address, "name": "it-six"}
    assert api.get(base) == {"reservations": [listed]}
    refused: Any = api.post(base, {"family": "ipv6", "name": "other", "ip": address})
    assert refused.status_code == 409 and "is already reserved" in refused.json()["error"]["details"]["ip"]

    api.finish(api.client.patch(f"{base}{address}/", {"name": "it-renamed"}, content_type="application/json"))
    assert dhcp_hosts(lab_host, name, family="ipv6") == [{**wanted, "name": "it-renamed"}]
    assert f"id:{duid},it-renamed,[{address}]" in dnsmasq_hosts(lab_host, name)

    api.finish(api.client.delete(f"{base}{address}/"))
    assert dhcp_hosts(lab_host, name, family="ipv6") == []
    assert not any(address in line for line in dnsmasq_hosts(lab_host, name))
    assert dnsmasq_pid(lab_host, name) == pid
