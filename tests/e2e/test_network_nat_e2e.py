"""In Chromium, on the lab: define a NAT network with the form, plug a running guest into it from the VM's NICs
tab, and watch the guest's DHCP lease appear on the network page, which stays open and is never reloaded.

The stack is the one `make run` starts, without celery beat: the lease refresh beat runs every few seconds is run
here by the test (``NetworkApi.wait_for_lease``); the lease reaches the page the product's way, as a
network.leases message over its WebSocket.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from hosts.messages import watcher_notify
from networks.models import Network
from tests.e2e.conftest import screenshot
from tests.e2e.test_hosts_e2e import log_in
from tests.lab.guests import ensure_guest, remove_guest, unique_guest_name
from tests.lab.network import NET_GUEST_MEMORY_MIB, NetworkApi, unique_network_name
from tests.lab.virsh import virsh
from tests.stack import wait_until
from vms.models import VirtualMachine

pytestmark = pytest.mark.e2e


@pytest.fixture
def scene(live_stack, transactional_db, lab_host, lab_net) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The lab host as the events process indexed it, with a running tiny guest and no NIC yet."""
    api = NetworkApi.for_lab(lab_host, log=live_stack["log"])
    watcher_notify(api.host.pk)
    name = unique_guest_name("e2e-nat")
    guest = ensure_guest(lab_host, name, data_disk=False, start=True, wait=False, memory_mib=NET_GUEST_MEMORY_MIB)
    wait_until(
        lambda: VirtualMachine.objects.filter(host=api.host, name=name, state="running").exists(),
        timeout=60,
        what="the events process indexing the running guest",
        log=live_stack["log"],
    )
    yield {"api": api, "guest": guest, "vm": VirtualMachine.objects.get(host=api.host, name=name)}
    remove_guest(lab_host, name)
    api.remove_networks()


def define_nat_network(page, base: str, api: NetworkApi) -> Network:  # type: ignore[no-untyped-def]
    subnet = api.free_subnet()
    hosts = list(subnet.hosts())
    name = unique_network_name("e2enat")
    api.names.append(name)
    page.goto(f"{base}/networks/new/")
    page.check("input[name=mode][value=nat]", force=True)
    page.fill("input[name=name]", name)
    page.fill("input[name=ipv4_address]", str(hosts[0]))
    page.fill("input[name=ipv4_prefix]", str(subnet.prefixlen))
    page.fill("input[name=dhcp_start]", str(hosts[99]))
    page.fill("input[name=dhcp_end]", str(hosts[199]))
    screenshot(page, "network-define-nat")
    page.get_by_role("button", name="Define network").click()
    wait_until(
        lambda: Network.objects.filter(host=api.host, name=name, active=True).exists(),
        timeout=120,
        what=f"network {name} defined and started by the form's operation",
    )
    return Network.objects.get(host=api.host, name=name)


def test_a_guest_plugged_into_a_new_nat_network_shows_its_lease_live(scene, live_stack, browser):  # type: ignore[no-untyped-def]
    base, api, vm = live_stack["base"], scene["api"], scene["vm"]
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, base, "ada")
    network = define_nat_network(page, base, api)

    watcher = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(watcher, base, "ada")
    watcher.goto(f"{base}/networks/{network.pk}/")
    expect(watcher.get_by_text("No leases yet")).to_be_visible()
    watcher.evaluate("window.kvNotReloaded = true")

    page.goto(f"{base}/vms/{vm.uuid}/#nics")
    add = page.locator("form[data-nic-add]")
    add.locator("select[name=network]").select_option(str(network.pk))
    add.get_by_role("button", name="Add NIC").click()
    wait_until(
        lambda: network.name in virsh(api.lab.uri, "domiflist", vm.name),
        timeout=120,
        what="the NIC plugged into the running guest",
    )
    mac = next(
        line.split()[-1] for line in virsh(api.lab.uri, "domiflist", vm.name).splitlines() if network.name in line
    )

    lease = api.wait_for_lease(network, mac, timeout=120)
    row = watcher.locator(f"tr[data-lease-mac='{mac}']")
    expect(row).to_be_visible(timeout=20_000)
    expect(row).to_contain_text(lease["ip"])
    assert watcher.evaluate("window.kvNotReloaded") is True
    screenshot(watcher, "network-lease-live")
