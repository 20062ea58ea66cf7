"""The lab's networking for the network tests (issue 8): scripts/lab/net.sh, guests' addresses, reachability.

``scripts/lab/net.sh`` builds, all outside the main network namespace: netns ``kvmweb-up`` (the
"upstream LAN": 198.51.100.1 and a dnsmasq DHCP server), joined by a veth pair to the lab host
(netns ``kvmweb-lab``), where ``br0`` enslaves the veth end ``up0`` (the host's "physical NIC"),
``up1`` is a second NIC on that LAN for macvtap networks, and an Open vSwitch bridge ``ovsbr0`` runs
on the userspace datapath.

The tiny guest prints each NIC's address on its serial console (scripts/lab/guest/udhcpc.script)::

    KVMWEB-NET iface=eth0 mac=52:54:00:12:34:56 ip=10.77.0.123/24 router=10.77.0.1
    KVMWEB-NET iface=eth0 mac=52:54:00:12:34:56 ip=none

This module reads those lines, runs ``ping`` in guests through the guest agent, reads the upstream
DHCP server's leases, and has ``NetworkApi``, the product's REST API as the network tests drive it.
Their pytest fixtures are in tests/lab/network_fixtures.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from hosts.models import Host
from kvmweb import virt
from kvmweb.operations.models import Operation
from kvmweb.virt.xml.network_xml import network_info
from networks.dhcp import networks_refresh_leases
from networks.interfaces import host_interfaces_refresh
from networks.models import Network
from tests.factories import make_user
from tests.lab.errors import LabError
from tests.lab.guests import Guest
from tests.lab.hosts import SCRIPTS, LabHost
from tests.lab.virsh import virsh
from tests.stack import wait_until

NET_SH = SCRIPTS / "net.sh"
_NET_LINE = re.compile(
    r"KVMWEB-NET iface=(?P<iface>\S+) mac=(?P<mac>[0-9a-f:]+) "
    r"ip=(?P<ip>none|[0-9.]+/[0-9]+)(?: router=(?P<router>\S+))?"
)
# The guests of the network tests: TCG on 2 shared cores boots in ~10-30 s, DHCP takes a few more.
BOOT_TIMEOUT = 120.0
LEASE_TIMEOUT = 90.0
NET_GUEST_MEMORY_MIB = 128


@dataclass(frozen=True)
class LabNet:
    """What scripts/lab/net.sh built (``net.sh describe``)."""

    lab_netns: str
    upstream_netns: str
    uplink: str
    bridge: str
    macvtap_nic: str
    ovs_bridge: str
    upstream_ip: str
    host_ip: str
    prefix: int
    upstream_dhcp: tuple[str, str]
    upstream_leases: str

    def in_upstream_range(self, address: str) -> bool:
        start, end = (ipaddress.IPv4Address(a) for a in self.upstream_dhcp)
        return start <= ipaddress.IPv4Address(address) <= end


def _net_sh(command: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            ["bash", str(NET_SH), command], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"scripts/lab/net.sh {command} did not finish within {timeout:g} s") from exc
    if done.returncode != 0:
        raise LabError(f"scripts/lab/net.sh {command} failed (rc={done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def ensure_lab_net() -> LabNet:
    """Bring the lab's networking up (a no-op when it runs: lab.sh start already does it)."""
    _net_sh("up", timeout=900)
    data = json.loads(_net_sh("describe", timeout=30))
    data["upstream_dhcp"] = tuple(data["upstream_dhcp"])
    return LabNet(**data)


def unique_network_name(base: str) -> str:
    """A network name for one test: ``it-<base>-<6 hex digits>``."""
    return f"it-{base}-{uuid.uuid4().hex[:6]}"


def own_bridge_body(name: str, mode: str, subnet: ipaddress.IPv4Network, **extra: Any) -> dict[str, Any]:
    """The API body of a network with its own bridge (nat, route, isolated) on ``subnet``, started.

    The gateway is the subnet's first address; DHCP hands out its second quarter (.64-.128 of a /24).
    """
    hosts = list(subnet.hosts())
    dhcp = {"start": str(hosts[len(hosts) // 4]), "end": str(hosts[len(hosts) // 2])}
    ipv4 = {"address": str(hosts[0]), "prefix": subnet.prefixlen, "dhcp": dhcp}
    return {"name": name, "mode": mode, "ipv4": ipv4, "start": True, **extra}


def random_mac() -> str:
    """A unicast, locally administered-looking MAC in QEMU's 52:54:00 range, unique enough for one run."""
    return "52:54:00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))


# -- guests' addresses, from their serial console ------------------------------------------------
@dataclass(frozen=True)
class NicAddress:
    iface: str
    mac: str
    interface: ipaddress.IPv4Interface | None  # None: no lease (yet)
    router: str | None

    @property
    def ip(self) -> str | None:
        return str(self.interface.ip) if self.interface is not None else None


def nic_addresses(guest: Guest) -> dict[str, NicAddress]:
    """The latest address the guest printed for each of its NICs since its last start, by MAC."""
    found: dict[str, NicAddress] = {}
    for line in guest.serial_lines():  # a line still being written would give "router=198.51.1"
        match = _NET_LINE.search(line)  # the shell's prompt may come first on the line
        if match is None:
            continue
        ip = match["ip"]
        router = match["router"]
        found[match["mac"]] = NicAddress(
            iface=match["iface"],
            mac=match["mac"],
            interface=None if ip == "none" else ipaddress.IPv4Interface(ip),
            router=None if router in (None, "none") else router,
        )
    return found


def wait_for_nic_address(guest: Guest, mac: str, timeout: float = LEASE_TIMEOUT) -> NicAddress:
    """Wait until the guest's NIC ``mac`` has a DHCP lease; return its address."""
    mac = mac.lower()
    found: list[NicAddress] = []

    def leased() -> bool:
        nic = nic_addresses(guest).get(mac)
        found[:] = [] if nic is None else [nic]
        return nic is not None and nic.interface is not None

    try:
        wait_until(leased, timeout=timeout, what=f"a DHCP lease on the NIC {mac} of {guest.name}")
    except TimeoutError:
        seen = f"its last report: {found[0]}" if found else "it printed nothing for that NIC"
        raise LabError(
            f"the NIC {mac} of {guest.name} got no DHCP lease within {timeout:g} s ({seen}); "
            f"last serial lines:\n{guest.serial_tail()}"
        ) from None
    return found[0]


def nic_name(guest: Guest, mac: str) -> str:
    """The guest's interface name (eth0, ...) of its NIC ``mac``, read through the guest agent."""
    for nic in guest.agent("guest-network-get-interfaces"):
        if nic.get("hardware-address", "").lower() == mac.lower():
            return str(nic["name"])
    raise LabError(f"{guest.name} has no NIC with MAC {mac}")


def set_static_address(guest: Guest, mac: str, address: str) -> None:
    """Give the NIC ``mac`` the static ``address`` (e.g. "10.10.0.11/24") and stop DHCP on it.

    For networks without DHCP (an Open vSwitch bridge). The guest's DHCP loop skips a NIC with a
    /run/nodhcp.<iface> file (scripts/lab/guest/netwatch).
    """
    iface = nic_name(guest, mac)
    script = (
        f"touch /run/nodhcp.{iface}; "
        f'[ -s /run/netwatch.{iface}.pid ] && kill "$(cat /run/netwatch.{iface}.pid)"; '
        f"ip addr flush dev {iface} && ip addr add {address} dev {iface} && ip link set {iface} up"
    )
    code, out = guest.run("/bin/sh", "-c", script)
    if code != 0:
        raise LabError(f"could not set {address} on {iface} of {guest.name} (exit {code}): {out}")


def ovs_port_tag(guest: Guest, mac: str) -> int | None:
    """The VLAN tag libvirt gave the Open vSwitch port of the guest's NIC ``mac`` (None: untagged)."""
    for line in virsh(guest.host.uri, "domiflist", guest.uuid, timeout=30).splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[4].lower() == mac.lower():
            done = subprocess.run(
                ["ovs-vsctl", "--timeout=20", "get", "Port", fields[0], "tag"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if done.returncode != 0:
                raise LabError(f"ovs-vsctl has no port {fields[0]}: {done.stderr.strip()}")
            tag = done.stdout.strip()
            return None if tag == "[]" else int(tag)
    raise LabError(f"{guest.name} has no NIC {mac} (virsh domiflist)")


# -- reachability, from inside a guest ------------------------------------------------------------
def ping(guest: Guest, address: str, *, count: int = 3, wait_s: int = 2) -> bool:
    """True when ``address`` answers at least one of ``count`` busybox pings from the guest."""
    code, _ = guest.run("/bin/ping", "-c", str(count), "-W", str(wait_s), address, timeout=count * wait_s + 30.0)
    return code == 0


def wait_until_reachable(guest: Guest, address: str, timeout: float = 60.0) -> None:
    """Ping until ``address`` answers (the first packets may go to ARP and switch learning)."""
    deadline = time.monotonic() + timeout
    while not ping(guest, address, count=2):
        if time.monotonic() > deadline:
            _, routes = guest.run("/sbin/ip", "-4", "addr")
            raise LabError(f"{guest.name} cannot reach {address} within {timeout:g} s; its addresses:\n{routes}")


def unreachable(guest: Guest, address: str) -> bool:
    """True when ``address`` does not answer any of 5 pings from the guest."""
    return not ping(guest, address, count=5, wait_s=2)


# -- the upstream LAN: its router's routes and pings, its DHCP server's leases -------------------------
def _in_upstream(net: LabNet, *command: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", net.upstream_netns, *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def upstream_route(net: LabNet, subnet: ipaddress.IPv4Network) -> Iterator[None]:
    """Inside the block, the upstream router sends ``subnet`` to the lab host (as a LAN's router
    would for a routed network behind it); the route is removed afterwards."""
    added = _in_upstream(net, "ip", "route", "add", str(subnet), "via", net.host_ip)
    if added.returncode != 0:
        raise LabError(f"could not add a route to {subnet} in {net.upstream_netns}: {added.stderr.strip()}")
    try:
        yield
    finally:
        _in_upstream(net, "ip", "route", "del", str(subnet), "via", net.host_ip)


def upstream_pings(net: LabNet, address: str, timeout: float = 60.0) -> None:
    """Ping ``address`` from the upstream router until it answers (the first packets may go to ARP)."""
    last: list[str] = []

    def answered() -> bool:
        done = _in_upstream(net, "ping", "-c", "1", "-W", "2", address)
        last[:] = [done.stdout + done.stderr]
        return done.returncode == 0

    try:
        wait_until(answered, timeout=timeout, what=f"{address} answering pings from {net.upstream_netns}")
    except TimeoutError:
        raise LabError(
            f"{address} does not answer pings from {net.upstream_netns}: {last[0] if last else ''}"
        ) from None


def upstream_leases(net: LabNet) -> dict[str, str]:
    """The upstream dnsmasq's leases, MAC → IP (its lease file: expiry mac ip hostname client-id)."""
    leases: dict[str, str] = {}
    try:
        text = Path(net.upstream_leases).read_text(encoding="utf-8")
    except FileNotFoundError:
        return leases
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            leases[parts[1].lower()] = parts[2]
    return leases


# -- libvirt's view (virsh), for "nothing changed" checks and cleanup --------------------------------
def network_names(host: LabHost) -> list[str]:
    """Every libvirt network of the host, active or not, sorted (``virsh net-list --all --name``)."""
    out = virsh(host.uri, "net-list", "--all", "--name", timeout=30)
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def taken_subnets(host: LabHost) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets of every network the host has (read from libvirt now)."""
    found = []
    for name in network_names(host):
        try:
            xml = virsh(host.uri, "net-dumpxml", name, timeout=30)
        except LabError:
            continue  # another test run removed it meanwhile
        found += [ipaddress.IPv4Network(ip.subnet) for ip in network_info(xml).ips if ip.subnet and ip.family == "ipv4"]
    return found


def remove_network(host: LabHost, name: str) -> None:
    """Stop and undefine a libvirt network if it exists (a test's cleanup)."""
    if name not in network_names(host):
        return
    with contextlib.suppress(LabError):  # not running
        virsh(host.uri, "net-destroy", name, timeout=60)
    with contextlib.suppress(LabError):  # transient: gone with its destroy
        virsh(host.uri, "net-undefine", name, timeout=60)


NetGuestFactory = Callable[..., Guest]  # the net_guests fixture: (base name, *NicSpec) -> a started Guest


# -- the product's REST API, as the network tests drive it ------------------------------------------
class NetworkApi:
    """``/api/v1/networks/...`` through a Django test client, for one lab host; operations run on a real worker."""

    def __init__(self, client: Client, host: Host, lab: LabHost, log: Path | None = None) -> None:
        self.client = client
        self.host = host
        self.lab = lab
        self.log = log
        self.names: list[str] = []  # every network name it asked for, to remove afterwards

    @classmethod
    def for_lab(cls, lab: LabHost, log: Path | None = None) -> NetworkApi:
        """An administrator's client on a new host row for the lab, with the host's inventory read."""
        admin = make_user("ada", admin=True)
        host = Host.objects.create(name="lab", uri=lab.uri, state=Host.State.CONNECTED)
        api = cls(Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=admin).key}"), host, lab, log)
        api.refresh_inventory()
        return api

    def remove_networks(self) -> None:
        """Stop and undefine, straight in libvirt, every network this client asked for."""
        for name in self.names:
            remove_network(self.lab, name)

    def post(self, url: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(url, body or {}, content_type="application/json")

    def get(self, url: str) -> Any:
        response = self.client.get(url)
        assert response.status_code == 200, response.content
        return response.json()

    def wait(self, response: Any, timeout: float = 180.0) -> Operation:
        """Wait until the operation a 202 response started has ended; return it."""
        assert response.status_code == 202, response.content
        op_id = response.json()["operation"]["id"]
        wait_until(
            lambda: Operation.objects.get(pk=op_id).status in ("succeeded", "failed"),
            timeout=timeout,
            what=f"operation {op_id}",
            log=self.log,
        )
        return Operation.objects.get(pk=op_id)

    def finish(self, response: Any, timeout: float = 180.0) -> Operation:
        """``wait``, and the operation must have succeeded."""
        op = self.wait(response, timeout)
        assert op.status == "succeeded", op.error
        return op

    def create(self, body: dict[str, Any]) -> Network:
        """POST /api/v1/networks/ for this host; return the network's row once libvirt has it."""
        self.names.append(body["name"])
        self.finish(self.post("/api/v1/networks/", {"host": self.host.pk, **body}))
        return Network.objects.get(host=self.host, name=body["name"], gone_since__isnull=True)

    def refused(self, body: dict[str, Any]) -> str:
        """POST /api/v1/networks/ with bad input; return the message it was refused with.

        Refused on the spot (4xx with an error object) or by its operation, which then fails.
        """
        self.names.append(body["name"])  # removed afterwards should it be defined all the same
        response = self.post("/api/v1/networks/", {"host": self.host.pk, **body})
        if response.status_code == 202:
            op = self.wait(response)
            assert op.status == "failed", f"bad input was accepted: {body}"
            return str(op.error)
        assert response.status_code in (400, 409), (response.status_code, response.content)
        return str(response.json()["error"]["message"])

    def detail(self, network: Network) -> dict[str, Any]:
        """GET /api/v1/networks/{id}/."""
        found: dict[str, Any] = self.get(f"/api/v1/networks/{network.pk}/")
        return found

    def leases(self, network: Network) -> list[dict[str, Any]]:
        return list(self.get(f"/api/v1/networks/{network.pk}/leases/")["leases"])

    def wait_for_lease(self, network: Network, mac: str, timeout: float = 60.0) -> dict[str, Any]:
        """The lease of ``mac`` as GET .../leases/ shows it, once the lease refresh has read it.

        The refresh is celery beat's job every few seconds (networks.refresh_leases_all); beat does
        not run in tests, so this runs the same refresh on each try.
        """
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            networks_refresh_leases(host_id=self.host.pk)
            found[:] = [lease for lease in self.leases(network) if lease["mac"].lower() == mac.lower()]
            return bool(found)

        wait_until(seen, timeout=timeout, what=f"the lease of {mac} in GET /api/v1/networks/{network.pk}/leases/")
        return found[0]

    def reserve(self, network: Network, *, mac: str, ip: str, name: str) -> Operation:
        url = f"/api/v1/networks/{network.pk}/reservations/"
        return self.finish(self.post(url, {"mac": mac, "ip": ip, "name": name}))

    def free_subnet(self) -> ipaddress.IPv4Network:
        """A random /24 in 10.100.0.0-10.199.255.0 that overlaps no network the lab host has now."""
        taken = taken_subnets(self.lab)
        for _ in range(100):
            subnet = ipaddress.IPv4Network(f"10.{random.randrange(100, 200)}.{random.randrange(256)}.0/24")
            if not any(subnet.overlaps(other) for other in taken):
                return subnet
        raise LabError("no free /24 found for a test network")

    def refresh_inventory(self) -> None:
        """Make the host's rows (networks, interfaces) match the lab, as the host refresh does."""
        host_reconcile(host=self.host, inventory=virt.get_inventory(self.host.virt_target()))
        host_interfaces_refresh(host=self.host)
