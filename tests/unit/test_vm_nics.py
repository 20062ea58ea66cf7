"""VM NICs on the test driver: the checks of attach-nic and update-nic (MAC, model, link, bandwidth, port
group), who may use them, the NICs tab, and the addresses kept on the VM's row and pushed as vm.addresses."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from kvmweb import virt
from kvmweb.errors import Invalid
from kvmweb.operations.models import Operation
from kvmweb.realtime import groups
from kvmweb.realtime import publish as publish_module
from kvmweb.virt import devices
from kvmweb.virt.devices import Applied
from networks.models import Network
from tests.runs import actor_of
from tests.unit import test_vm_edit
from tests.unit.test_vm_edit import TARGET, act
from vms import nic_addresses
from vms.actions import vm_action
from vms.models import VirtualMachine

lab = test_vm_edit.lab  # the test driver as a host, and its VMs (fixtures)
domain = test_vm_edit.domain
PORTGROUPS = (
    "<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/>"
    "<portgroup name='v10' default='yes'><vlan><tag id='10'/></vlan></portgroup><portgroup name='v20'/></network>"
)


@pytest.fixture
def network(lab) -> Any:  # type: ignore[no-untyped-def]
    """Call it after making the VMs (their reconcile rewrites the row): the test driver's network, with port groups."""

    def give() -> Network:
        found, _ = Network.objects.get_or_create(
            host=lab, name="default", defaults={"uuid": "dd8fe884-6c02-601e-7551-cca97df1c5df"}
        )
        Network.objects.filter(pk=found.pk).update(xml=PORTGROUPS, active=True, gone_since=None)
        return Network.objects.get(pk=found.pk)

    return give


def queue(vm: VirtualMachine, action: str, user: Any, **params: Any) -> Operation:
    return vm_action(actor=actor_of(user), vm=vm, action=action, params=params)


def refused(vm: VirtualMachine, action: str, user: Any, **params: Any) -> Invalid:
    with pytest.raises(Invalid) as caught:
        queue(vm, action, user, **params)
    assert not Operation.objects.exists()
    return caught.value


# -- attach-nic ---------------------------------------------------------------------------------------------------


def test_attach_takes_model_mac_link_bandwidth_and_port_group(queued, domain, network, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    net = network()

    op = queue(
        vm, "attach-nic", alice, network=net.pk, portgroup="v20", model="rtl8139", mac="52-54-00-0A-0B-0C",
        link="down", in_average="1000", in_peak="2000", out_average="500",
    )  # fmt: skip

    assert op.params == {
        "network": "default",
        "portgroup": "v20",
        "model": "rtl8139",
        "mac": "52:54:00:0a:0b:0c",
        "link": "down",
        "bandwidth": {
            "inbound": {"average": 1000, "peak": 2000, "burst": None},
            "outbound": {"average": 500, "peak": None, "burst": None},
        },
    }


def test_attach_without_a_mac_gets_a_new_one_unused_on_the_host(queued, domain, network, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    network()

    op = queue(vm, "attach-nic", alice, network="default")

    assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", op.params["mac"])
    assert op.params["mac"] != "52:54:00:aa:bb:01"


def test_a_mac_another_vm_of_the_host_uses_is_refused_naming_it(queued, domain, network, alice):  # type: ignore[no-untyped-def]
    other = domain(running=False)
    vm = domain(running=False)
    network()
    # both were made with 52:54:00:aa:bb:01; the check reads the host's rows, so give the other its own
    VirtualMachine.objects.filter(pk=other.pk).update(xml=other.xml.replace("52:54:00:aa:bb:01", "52:54:00:aa:bb:77"))

    error = refused(vm, "attach-nic", alice, network="default", mac="52:54:00:AA:BB:77")

    assert error.details == {
        "mac": f"MAC address 52:54:00:aa:bb:77 is already used by {other.name} on testhost: two NICs with one "
        "address break each other's traffic. Leave the MAC empty to get a new one."
    }


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"mac": "01:00:5e:00:00:01"}, "mac", "multicast"),
        ({"mac": "52:54:00:00:00"}, "mac", "is not a MAC address"),
        ({"mac": "00:00:00:00:00:00"}, "mac", "not a usable MAC"),
        ({"mac": "52:54:00:aa:bb:01"}, "mac", "another NIC of"),
        ({"model": "ne2k_pci"}, "model", "virtio, e1000, rtl8139"),
        ({"link": "sideways"}, "link", "up or down"),
        ({"portgroup": "v99"}, "portgroup", "no port group 'v99'; it has v10, v20"),
        ({"in_average": "100", "in_peak": "50"}, "bandwidth.inbound", "below the average"),
        ({"out_peak": "50"}, "bandwidth.outbound", "needs an average rate"),
        ({"bandwidth": {"inbound": {"average": "fast"}}}, "bandwidth.inbound", "whole numbers"),
        ({"bandwidth": {"sideways": {}}}, "bandwidth", "inbound"),
    ],
)
def test_bad_nic_input_is_refused_per_field(queued, domain, network, alice, params, field, words):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    network()

    error = refused(vm, "attach-nic", alice, network="default", **params)

    assert words in error.details[field]


# -- update-nic ---------------------------------------------------------------------------------------------------


def test_update_takes_link_bandwidth_and_port_group(queued, domain, network, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    network()

    op = queue(vm, "update-nic", alice, mac="52:54:00:AA:BB:01", link="down", out_average="800", portgroup="v10")

    assert op.params == {
        "mac": "52:54:00:aa:bb:01",
        "link": "down",
        "bandwidth": {"inbound": None, "outbound": {"average": 800, "peak": None, "burst": None}},
        "portgroup": "v10",
    }


def test_update_with_nothing_new_is_refused(queued, domain, network, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    network()

    error = refused(vm, "update-nic", alice, mac="52:54:00:aa:bb:01", link="up", fields="bandwidth,portgroup")

    assert error.message == "The NIC 52:54:00:aa:bb:01 already has that: nothing to change."


def test_update_of_an_unknown_nic_is_refused(queued, domain, network, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    network()

    error = refused(vm, "update-nic", alice, mac="52:54:00:00:00:99", link="down")

    assert error.details == {"mac": f"{vm.name} has no network interface with MAC address 52:54:00:00:00:99."}


def test_the_update_runs_through_the_adapter_and_says_where_it_applied(queued, domain, network, alice, monkeypatch):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    network()
    calls: list[tuple[str, Any]] = []

    def update(target: Any, uuid: str, mac: str, change: Any) -> Applied:  # the test driver has no updateDevice
        calls.append((mac, change))
        return Applied(live=True, config=True, note=devices.NOW_AND_NEXT_BOOT)

    monkeypatch.setattr(devices, "update_nic", update)

    op = act(vm, "update-nic", alice, mac="52:54:00:aa:bb:01", link="down")

    assert op.status == "succeeded", op.error
    assert op.result == {
        "mac": "52:54:00:aa:bb:01",
        "link": "down",
        "live": True,
        "config": True,
        "note": devices.NOW_AND_NEXT_BOOT,
    }
    assert [(mac, change.link) for mac, change in calls] == [("52:54:00:aa:bb:01", "down")]


# -- who may ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("user", "status"), [("alice", 202), ("ada", 202), ("bob", 404), (None, 401)])
def test_only_those_who_may_act_on_the_vm_change_its_nics(queued, domain, network, request, user, status):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    network()
    client = Client()
    if user is not None:
        client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=request.getfixturevalue(user)).key}")

    response = client.post(
        f"/api/v1/vms/{vm.uuid}/actions/update-nic/",
        {"mac": "52:54:00:aa:bb:01", "link": "down"},
        content_type="application/json",
    )

    assert response.status_code == status, response.content
    assert Operation.objects.filter(kind="vm.update-nic").exists() == (status == 202)


# -- addresses ----------------------------------------------------------------------------------------------------


def test_addresses_are_kept_on_the_row_and_pushed_once_per_change(
    domain, alice, monkeypatch, django_capture_on_commit_callbacks
):  # type: ignore[no-untyped-def]
    sent: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(publish_module, "_send", lambda groups, payload, *_: sent.append((groups, payload)))
    vm = domain(running=True)
    running = next(d for d in virt.list_domains(TARGET) if d.name == "test")  # the driver's own, with a lease
    found = devices.get_interface_addresses(TARGET, [str(vm.uuid), running.uuid])
    # the scratch VM's NIC has no lease on the test driver; give it the one the driver reports
    found[str(vm.uuid)] = tuple(
        devices.NicAddresses(mac="52:54:00:aa:bb:01", name=nic.name, source=nic.source, addresses=nic.addresses)
        for nic in found[running.uuid]
    )

    with django_capture_on_commit_callbacks(execute=True):
        changed = nic_addresses.addresses_apply(host_id=vm.host_id, found=found, only=str(vm.uuid))
        again = nic_addresses.addresses_apply(host_id=vm.host_id, found=found, only=str(vm.uuid))

    nics = [
        {
            "mac": "52:54:00:aa:bb:01",
            "name": "testnet0",
            "source": "lease",
            "addresses": [{"type": "ipv4", "address": "192.168.122.3", "prefix": 24}],
        }
    ]
    assert [row.pk for row in changed] == [vm.pk] and again == []
    assert VirtualMachine.objects.get(pk=vm.pk).addresses == nics
    assert [payload for _groups, payload in sent] == [
        {"type": "vm.addresses", "vm": str(vm.uuid), "host": vm.host_id, "nics": nics, "v": 1}
    ]
    assert groups.user_group(alice.pk) in sent[0][0]  # the owner's pages hear of it, and nobody else's

    nic_addresses.addresses_apply(host_id=vm.host_id, found={}, only=str(vm.uuid))  # it stopped running
    assert VirtualMachine.objects.get(pk=vm.pk).addresses == []


def test_the_nics_tab_shows_each_nic_and_its_addresses_from_the_row(domain, network, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    network()
    nics = [
        {
            "mac": "52:54:00:aa:bb:01",
            "name": "eth0",
            "source": "agent",
            "addresses": [{"type": "ipv4", "address": "10.77.0.5", "prefix": 24}],
        }
    ]
    VirtualMachine.objects.filter(pk=vm.pk).update(addresses=nics)
    client = Client()
    client.force_login(alice)

    page = client.get(f"/vms/{vm.uuid}/").content.decode()

    assert 'id="tab-nics"' in page and 'data-nic="52:54:00:aa:bb:01"' in page
    assert '<span class="kv-mono kv-ip">10.77.0.5/24</span>' in page and ">guest agent</span>" in page
    assert 'name="portgroup"' in page and "v10 (VLAN 10)" in page
    assert "Set link down" in page


def test_the_hardware_tab_summarises_nics_and_leaves_managing_them_to_the_nics_tab(domain, network, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    network()
    client = Client()
    client.force_login(alice)

    page = client.get(f"/vms/{vm.uuid}/").content.decode()

    hardware = page.split('id="tab-hardware"')[1].split('id="tab-nics"')[0]
    card = hardware.split('id="hw-nics"')[1].split("</section>")[0]
    assert '<a class="btn btn-sm" href="#nics" data-open-tab="nics">' in card
    assert "<strong>default</strong>" in card and '<span class="kv-mono">52:54:00:aa:bb:01</span>' in card
    assert "<form" not in card and "attach-nic" not in hardware and "detach-nic" not in hardware
    assert page.count("/actions/attach-nic/") == 1  # the NICs tab's form only
