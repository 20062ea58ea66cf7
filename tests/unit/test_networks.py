"""Virtual networks on libvirt's test driver: the checks, the operations, the API and the pages.

ada administers; alice is a member of the host (she sees its networks but may not change them); bob is not.
The test driver's host already has libvirt's `default` NAT network (192.168.122.0/24 on virbr0).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.audit.models import AuditEvent
from kvmweb.errors import Conflict, Forbidden, Invalid
from kvmweb.operations.models import Operation
from kvmweb.realtime import publish as publish_module
from kvmweb.virt import networks as virt_networks
from kvmweb.virt.xml import DomainSpec, NicSpec, build_domain_xml
from networks.actions import network_action, network_define
from networks.interfaces import host_interfaces_refresh
from networks.models import Network
from tests.factories import PASSWORD, make_host
from tests.runs import actor_of, run

TEST_URI = "test:///default"
TARGET = virt.HostTarget(TEST_URI)


@pytest.fixture
def lab(alice):
    host = make_host("testhost", uri=TEST_URI, members=(alice,))
    host_reconcile(host=host, inventory=virt.get_inventory(TARGET))
    host_interfaces_refresh(host=host)
    # The test driver reports eth1 and lo; a real host for bridged networks also has its Linux bridge br0.
    host.interfaces["items"].append({"name": "br0", "type": "bridge", "active": True})
    host.save(update_fields=["interfaces"])
    return host


@pytest.fixture(autouse=True)
def _clean_test_driver() -> Iterator[None]:
    before_networks = {n.uuid for n in virt.get_inventory(TARGET).networks}
    before_domains = {d.uuid for d in virt.list_domains(TARGET)}
    yield
    for domain in virt.list_domains(TARGET):
        if domain.uuid not in before_domains:
            if domain.state != "shutoff":
                virt.destroy_domain(TARGET, domain.uuid)
            virt.undefine_domain(TARGET, domain.uuid)
    for network in virt.get_inventory(TARGET).networks:
        if network.uuid not in before_networks:
            virt_networks.undefine_network(TARGET, network.uuid)
    virt.close_all()


@pytest.fixture
def pushed(monkeypatch) -> list[tuple[list[str], dict[str, Any]]]:
    sent: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(publish_module, "_send", lambda groups, payload, *_: sent.append((groups, payload)))
    return sent


def unique(prefix: str = "n") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def nat_body(name: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "mode": "nat",
        "name": name,
        "ipv4": {"address": "10.77.0.1", "prefix": 24, "dhcp": {"start": "10.77.0.100", "end": "10.77.0.199"}},
        "bridge": {"name": "virbr77", "stp": True, "delay": 0},
    }
    body.update(changes)
    return body


def defined(ada: Any, lab: Any, body: dict[str, Any]) -> Network:
    op = run(network_define(actor=actor_of(ada), host=lab, data=body))
    assert op.status == Operation.Status.SUCCEEDED, op.error
    return Network.objects.get(host=lab, name=body["name"])


def act(ada: Any, network: Network, action: str, **params: Any) -> Network:
    op = run(network_action(actor=actor_of(ada), network=network, action=action, params=params))
    assert op.status == Operation.Status.SUCCEEDED, op.error
    network.refresh_from_db()
    return network


def persistent_definition(network: Network) -> str:
    record = virt.get_network_record(TARGET, str(network.uuid))
    return record.xml_inactive or record.xml


def on_host(name: str) -> virt.NetworkRecord:
    found = virt_networks.get_network_uuid(TARGET, name)
    assert found is not None
    return virt.get_network_record(TARGET, found)


# The operations


def test_admin_defines_starts_autostarts_stops_and_undefines_a_nat_network(
    ada, lab, queued, pushed, django_capture_on_commit_callbacks
) -> None:
    name = unique()
    with django_capture_on_commit_callbacks(execute=True):
        network = defined(ada, lab, nat_body(name, start=True, autostart=True))
    assert (network.active, network.autostart, network.bridge, network.forward_mode) == (True, True, "virbr77", "nat")
    assert on_host(name).active is True
    assert [p["network"]["name"] for _, p in pushed if p["type"] == "network.state"] == [name]
    network = act(ada, network, "autostart-off")
    assert network.autostart is False and on_host(name).autostart is False
    network = act(ada, network, "stop")
    assert network.active is False and on_host(name).active is False
    network = act(ada, network, "start")
    assert network.active is True
    network = act(ada, network, "undefine")
    assert network.gone_since is not None and virt_networks.get_network_uuid(TARGET, name) is None
    kinds = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert kinds[0] == "network.define" and "network.undefine" in kinds


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "isolated", "ipv4": {"address": "10.79.0.1", "prefix": 24}},
        {"mode": "route", "ipv4": {"address": "10.78.0.1", "prefix": 24}, "forward_dev": "eth1"},
        {"mode": "bridge", "bridge": {"name": "br0"}},
        {"mode": "macvtap", "forward_dev": "eth1"},
        {
            "mode": "openvswitch",
            "bridge": {"name": "ovsbr0"},
            "portgroups": [
                {"name": "v10", "vlan": {"tags": [10]}},
                {"name": "all", "vlan": {"tags": [10, 20], "trunk": True, "native": 10}},
            ],
        },
    ],
    ids=["isolated", "route", "bridge", "macvtap", "openvswitch"],
)
def test_each_mode_is_defined_as_its_own_xml(ada, lab, queued, body) -> None:
    name = unique()
    network = defined(ada, lab, {**body, "name": name})
    from networks.selectors import network_mode

    assert network_mode(network) == body["mode"]
    assert network.active is False


def test_an_action_in_the_wrong_state_or_unknown_is_refused(ada, lab, queued) -> None:
    network = defined(ada, lab, nat_body(unique()))
    for action in ("stop", "autostart-off"):
        with pytest.raises(Conflict):
            network_action(actor=actor_of(ada), network=network, action=action)
    with pytest.raises(Invalid, match="Unknown network action"):
        network_action(actor=actor_of(ada), network=network, action="explode")
    assert list(Operation.objects.values_list("kind", flat=True)) == ["network.define"]


# The checks: each bad value refused, naming its field, with nothing sent to libvirt

BAD = [
    ({"ipv4": {"address": "192.168.122.50", "prefix": 24}}, Conflict, "ipv4.address", "overlaps 192.168.122.0/24"),
    ({"ipv4": {"address": "10.77.0.1", "prefix": 24, "dhcp": {"start": "10.78.0.2", "end": "10.78.0.9"}}}, Invalid,
     "ipv4.dhcp", "inside the subnet"),
    ({"ipv4": {"address": "10.77.0.1", "prefix": 24, "dhcp": {"start": "10.77.0.1", "end": "10.77.0.9"}}}, Invalid,
     "ipv4.dhcp", "includes the gateway"),
    ({"bridge": {"name": "virbr0"}}, Conflict, "bridge.name", "taken"),
    ({"bridge": {"name": "eth1"}}, Conflict, "bridge.name", "the host's ethernet eth1"),
    ({"name": "bad name"}, Invalid, "name", "Network name"),
    ({"name": "default"}, Conflict, "name", "already has a network named default"),
    ({"portgroups": [{"name": "a"}, {"name": "a"}]}, Invalid, "portgroups.1.name", "two portgroups named a"),
    ({"portgroups": [{"name": "a", "vlan": {"tags": [10]}}]}, Invalid, "portgroups.0.vlan", "Open vSwitch"),
    ({"bandwidth": {"inbound": {"average": -5}}}, Invalid, "bandwidth.inbound.average", "from 1 to 4194303; got -5"),
    ({"bandwidth": {"outbound": {"average": "fast"}}}, Invalid, "bandwidth.outbound.average", "whole number"),
    ({"mode": "warp"}, Invalid, "mode", "Choose a mode"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "error", "field", "words"), BAD, ids=[b[2] + ":" + b[3] for b in BAD])
def test_bad_definitions_are_refused_per_field_before_libvirt(ada, lab, queued, changes, error, field, words) -> None:
    before = virt.get_inventory(TARGET).networks
    with pytest.raises(error) as refused:
        network_define(actor=actor_of(ada), host=lab, data={**nat_body("fresh"), **changes})
    assert words in refused.value.details[field]
    assert queued == [] and not Operation.objects.exists()
    assert virt.get_inventory(TARGET).networks == before
    assert AuditEvent.objects.get().outcome == AuditEvent.Outcome.FAILED


def test_vlan_ids_outside_0_to_4095_are_refused_on_open_vswitch(ada, lab, queued) -> None:
    body = {"mode": "openvswitch", "name": "ovs", "bridge": {"name": "ovsbr0"},
            "portgroups": [{"name": "v", "vlan": {"tags": [4096]}}]}  # fmt: skip
    with pytest.raises(Invalid) as refused:
        network_define(actor=actor_of(ada), host=lab, data=body)
    assert refused.value.details == {"portgroups.0.vlan.tags": "A VLAN id is a whole number from 0 to 4095; got 4096."}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"mode": "bridge", "bridge": {"name": "br9"}}, "testhost has no bridge named br9; its bridges: br0."),
        ({"mode": "bridge", "bridge": {"name": "eth1"}}, "testhost has no bridge named eth1; its bridges: br0."),
        (
            {"mode": "openvswitch", "bridge": {"name": "br0"}},
            "br0 on testhost is a Linux bridge, not an Open vSwitch one; choose Host bridge.",
        ),
    ],
    ids=["missing", "not-a-bridge", "linux-bridge-for-ovs"],
)
def test_a_host_bridge_the_host_does_not_have_is_refused_naming_its_bridges(ada, lab, queued, body, words) -> None:
    with pytest.raises(Conflict) as refused:
        network_define(actor=actor_of(ada), host=lab, data={**body, "name": "onbridge"})
    assert refused.value.details == {"bridge.name": words}
    assert queued == [] and not Operation.objects.exists()


@pytest.mark.parametrize(
    ("mode", "bridge", "interfaces", "warning"),
    [
        ("bridge", "br7", {}, "kvmweb could not check that testhost has the bridge br7: its interfaces are not known."),
        ("bridge", "br7", {"reported": False, "items": []}, "kvmweb could not check that testhost has the bridge br7"),
        ("openvswitch", "ovsbr0", None, "kvmweb could not check that testhost has the Open vSwitch bridge ovsbr0."),
    ],
    ids=["never-read", "not-reported", "ovs-not-listed"],
)
def test_an_unknown_host_bridge_is_defined_with_a_warning(ada, lab, queued, mode, bridge, interfaces, warning) -> None:
    if interfaces is not None:
        lab.interfaces = interfaces
        lab.save(update_fields=["interfaces"])
    name = unique()

    network = defined(ada, lab, {"mode": mode, "name": name, "bridge": {"name": bridge}})

    op = Operation.objects.get(kind="network.define")
    assert op.params["warning"].startswith(warning) and op.log[0]["message"] == op.params["warning"]
    assert network.bridge == bridge


def test_a_known_host_bridge_is_defined_without_a_warning(ada, lab, queued) -> None:
    defined(ada, lab, {"mode": "bridge", "name": unique(), "bridge": {"name": "br0"}})
    assert "warning" not in Operation.objects.get(kind="network.define").params


def _guest_on(name: str, network: str) -> str:
    spec = DomainSpec(name=name, uuid=str(uuid.uuid4()), memory_mib=64, vcpus=1, nics=(NicSpec(network=network),))
    summary = virt.define_domain(TARGET, build_domain_xml(spec))
    virt.start_domain(TARGET, summary.uuid)
    return summary.uuid


def test_undefine_is_refused_while_a_running_vm_uses_it_naming_the_vm(ada, lab, queued) -> None:
    name = unique()
    network = defined(ada, lab, nat_body(name, start=True))
    vm_name = unique("vm")
    _guest_on(vm_name, name)
    host_reconcile(host=lab, inventory=virt.get_inventory(TARGET))
    with pytest.raises(Conflict) as refused:
        network_action(actor=actor_of(ada), network=network, action="undefine")
    assert vm_name in refused.value.message and refused.value.details == {"vms": [vm_name]}
    assert on_host(name).active is True


def test_undefine_checks_the_host_again_when_it_runs(ada, lab, queued) -> None:
    name = unique()
    network = defined(ada, lab, nat_body(name, start=True))
    op = network_action(actor=actor_of(ada), network=network, action="undefine")
    vm_name = unique("vm")  # started on it after the request was accepted, unknown to the database
    _guest_on(vm_name, name)
    op = run(op)
    assert op.status == Operation.Status.FAILED and vm_name in op.error
    assert on_host(name).active is True


def test_members_and_others_may_not_manage_networks(ada, alice, bob, lab, queued) -> None:
    network = defined(ada, lab, nat_body(unique()))
    for user in (alice, bob):
        with pytest.raises(Forbidden):
            network_define(actor=actor_of(user), host=lab, data=nat_body(unique()))
        with pytest.raises(Forbidden):
            network_action(actor=actor_of(user), network=network, action="start")


def test_the_xml_editor_action_redefines_and_refuses_another_name(ada, lab, queued) -> None:
    name = unique()
    network = defined(ada, lab, nat_body(name))
    xml = persistent_definition(network)
    network = act(ada, network, "define-xml", xml=xml.replace("10.77.0.199", "10.77.0.150"))
    assert "10.77.0.150" in network.xml
    with pytest.raises(Invalid, match="must stay"):
        network_action(
            actor=actor_of(ada), network=network, action="define-xml", params={"xml": xml.replace(name, "x")}
        )
    with pytest.raises(Invalid):
        network_action(
            actor=actor_of(ada), network=network, action="define-xml", params={"xml": "<!DOCTYPE x []><network/>"}
        )


# The API


def api(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


def test_api_defines_lists_reads_and_acts(ada, lab, queued) -> None:
    name = unique()
    client = api(ada)
    response = client.post("/api/v1/networks/", {"host": lab.pk, **nat_body(name)}, content_type="application/json")
    assert response.status_code == 202, response.content
    assert response.json()["operation"]["kind"] == "network.define"
    run(Operation.objects.get(pk=response.json()["operation"]["id"]))
    network = Network.objects.get(host=lab, name=name)
    rows = client.get(f"/api/v1/networks/?host={lab.pk}").json()
    rows = rows["results"] if isinstance(rows, dict) else rows
    assert {(r["name"], r["mode"]) for r in rows} == {("default", "nat"), (name, "nat")}
    item = client.get(f"/api/v1/networks/{network.pk}/").json()
    assert (item["name"], item["active"], item["bridge"], item["host"]) == (name, False, "virbr77", lab.pk)
    assert "<network" in item["xml"]
    assert client.get(f"/api/v1/networks/{network.pk}/xml/").json()["xml"].startswith("<network")
    response = client.post(f"/api/v1/networks/{network.pk}/actions/start/")
    assert response.status_code == 202 and response.json()["operation"]["kind"] == "network.start"


def test_api_refusals_are_exact_json(ada, lab, queued) -> None:
    client = api(ada)
    body = {
        "host": lab.pk,
        **nat_body(
            "x", ipv4={"address": "10.77.0.1", "prefix": 24, "dhcp": {"start": "10.77.0.1", "end": "10.77.0.9"}}
        ),
    }
    response = client.post("/api/v1/networks/", body, content_type="application/json")
    message = "The DHCP range 10.77.0.1–10.77.0.9 includes the gateway 10.77.0.1."
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid", "message": message, "details": {"ipv4.dhcp": message}}}
    default = Network.objects.get(host=lab, name="default")
    response = client.post(f"/api/v1/networks/{default.pk}/actions/start/")
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "conflict",
            "message": "Cannot start: default is active.",
            "details": {"active": True, "action": "start"},
        }
    }


def test_api_access(ada, alice, bob, lab, queued) -> None:
    network = Network.objects.get(host=lab, name="default")
    body = {"host": lab.pk, **nat_body(unique())}
    anonymous = Client()
    assert anonymous.get("/api/v1/networks/").status_code == 401
    assert anonymous.post(f"/api/v1/networks/{network.pk}/actions/stop/").status_code == 401
    member = api(alice)
    assert member.get(f"/api/v1/networks/{network.pk}/").status_code == 200
    denied = member.post("/api/v1/networks/", body, content_type="application/json")
    assert denied.status_code == 403
    assert denied.json() == {
        "error": {"code": "permission_denied", "message": "Only administrators can do that.", "details": {}}
    }
    assert member.post(f"/api/v1/networks/{network.pk}/actions/stop/").status_code == 403
    assert member.get(f"/api/v1/networks/{network.pk}/xml/").status_code == 403
    other = api(bob)
    rows = other.get("/api/v1/networks/").json()
    assert (rows["results"] if isinstance(rows, dict) else rows) == []
    hidden = other.get(f"/api/v1/networks/{network.pk}/")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    assert other.post(f"/api/v1/networks/{network.pk}/actions/stop/").status_code == 404
    assert not Operation.objects.exists()


# The pages


def login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


def test_list_and_detail_render_modes_actions_and_vms(ada, lab, queued) -> None:
    name = unique()
    network = defined(
        ada, lab, nat_body(name, start=True, portgroups=[{"name": "slow", "bandwidth": {"outbound": {"average": 100}}}])
    )
    vm_name = unique("vm")
    _guest_on(vm_name, name)
    host_reconcile(host=lab, inventory=virt.get_inventory(TARGET))
    client = login(ada)
    listing = client.get("/networks/").content.decode()
    assert name in listing and "Define network" in listing and f"/networks/{network.pk}/actions/stop/" in listing
    page = client.get(f"/networks/{network.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "NAT: guests get private addresses" in html and "virbr77" in html and "10.77.0.100" in html
    assert vm_name in html and "slow" in html and "out: 100 kB/s" in html
    assert f"/networks/{network.pk}/xml/" in html and "In use by running VMs: " + vm_name in html
    assert 'id="dhcp"' in html


@pytest.mark.parametrize("mode", ["nat", "route", "isolated", "bridge", "macvtap", "openvswitch"])
def test_define_form_renders_and_defines_each_mode(ada, lab, queued, mode) -> None:
    client = login(ada)
    page = client.get(f"/networks/new/?host={lab.pk}")
    assert page.status_code == 200 and f'value="{mode}"' in page.content.decode()
    fields = {
        "nat": {"ipv4_address": "10.80.0.1", "ipv4_prefix": "24", "dhcp_start": "10.80.0.10", "dhcp_end": "10.80.0.20"},
        "route": {"ipv4_address": "10.81.0.1", "ipv4_prefix": "24"},
        "isolated": {},
        "bridge": {"bridge_name": "br0"},
        "macvtap": {"forward_dev": "eth1"},
        "openvswitch": {"bridge_name": "ovsbr0", "pg0_name": "v10", "pg0_tags": "10"},
    }[mode]
    name = unique()
    response = client.post("/networks/new/", {"host": lab.pk, "mode": mode, "name": name, "delay": "0", **fields})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert run(Operation.objects.get(kind="network.define")).status == Operation.Status.SUCCEEDED
    assert Network.objects.filter(host=lab, name=name).exists()


def test_define_form_sends_portgroup_average_peak_and_burst(ada, lab, queued) -> None:
    from networks.forms import NetworkDefineForm

    rates = {"pg0_in_average": "1000", "pg0_in_peak": "2000", "pg0_in_burst": "512", "pg0_out_peak": ""}
    form = NetworkDefineForm(
        {"host": lab.pk, "mode": "isolated", "name": "pgqos", "pg0_name": "slow", "pg1_name": "", **rates},
        hosts=[(lab.pk, lab.name)],
    )

    assert form.is_valid(), form.errors
    assert form.to_data()["portgroups"] == [
        {"name": "slow", "default": False, "bandwidth": {"inbound": {"average": 1000, "peak": 2000, "burst": 512}}}
    ]


def test_define_form_defines_portgroup_qos_and_puts_its_refusal_next_to_the_field(ada, lab, queued) -> None:
    client = login(ada)
    data = {"host": lab.pk, "mode": "isolated", "name": unique(), "delay": "0", "pg0_name": "slow"}
    qos = {"pg0_out_average": "100", "pg0_out_peak": "300", "pg0_out_burst": "64"}

    refused = client.post("/networks/new/", {**data, "pg0_out_average": "100", "pg0_out_peak": "50"})
    html = refused.content.decode()
    assert refused.status_code == 400 and 'id="id_pg0_out_peak"' in html
    peak_cell = html.split('id="id_pg0_out_peak"')[1][:600]
    assert "The peak rate (50 kB/s) is below the average rate (100 kB/s)." in peak_cell

    assert client.post("/networks/new/", {**data, **qos}).status_code == 302
    assert run(Operation.objects.get(kind="network.define")).status == Operation.Status.SUCCEEDED
    xml = on_host(data["name"]).xml
    assert "<outbound average='100' peak='300' burst='64'/>" in xml


def test_define_form_puts_each_refusal_next_to_its_field(ada, lab, queued) -> None:
    client = login(ada)
    data = {"host": lab.pk, "mode": "nat", "name": "bad one", "ipv4_address": "192.168.122.9", "ipv4_prefix": "24"}
    response = client.post("/networks/new/", data)
    html = response.content.decode()
    assert response.status_code == 400 and 'id="id_ipv4_address-errors"' in html and "overlaps" in html
    assert 'id="id_name-errors"' in html and "Network name may use" in html
    assert not Operation.objects.exists()


def test_xml_editor_pages_review_a_diff_and_refuse_bad_xml(ada, alice, lab, queued) -> None:
    network = Network.objects.get(host=lab, name="default")
    client = login(ada)
    assert client.get(f"/networks/{network.pk}/xml/").status_code == 200
    changed = network.xml.replace("192.168.122.254", "192.168.122.200")
    review = client.post(f"/networks/{network.pk}/xml/review/", {"xml": changed, "original": network.xml})
    assert review.status_code == 200 and "1 changed" in review.content.decode()
    bad = client.post(f"/networks/{network.pk}/xml/review/", {"xml": "<pool/>", "original": network.xml})
    assert bad.status_code == 400 and "&lt;network&gt;" in bad.content.decode()
    assert login(alice).get(f"/networks/{network.pk}/xml/").status_code == 403


def test_page_access(ada, alice, bob, lab, queued) -> None:
    network = Network.objects.get(host=lab, name="default")
    member = login(alice)
    assert member.get("/networks/new/").status_code == 403
    page = member.get(f"/networks/{network.pk}/").content.decode()
    assert "/actions/stop/" not in page and "Define network" not in member.get("/networks/").content.decode()
    assert member.post(f"/networks/{network.pk}/actions/stop/").status_code == 403
    assert login(bob).get(f"/networks/{network.pk}/").status_code == 404
    assert not Operation.objects.exists()


def test_host_refresh_stores_interfaces_and_the_host_page_shows_them(ada, lab) -> None:
    stored = host_interfaces_refresh(host=lab)
    assert stored["reported"] is True and [i["name"] for i in stored["items"]] == ["eth1"]
    html = login(ada).get(f"/hosts/{lab.pk}/").content.decode()
    assert "Host interfaces" in html and "eth1" in html and "192.168.0.5/24" in html


def test_a_host_that_does_not_report_interfaces_says_so(ada, lab, monkeypatch) -> None:
    monkeypatch.setattr(virt_networks, "list_host_interfaces", lambda target: None)
    host_interfaces_refresh(host=lab)
    html = login(ada).get(f"/hosts/{lab.pk}/").content.decode()
    assert "does not report its interfaces" in html


def test_the_xml_api_answers_the_stored_definition_without_asking_the_host(ada, lab, queued, no_libvirt) -> None:
    network = defined(ada, lab, nat_body(unique()))
    on_host = persistent_definition(network)
    with no_libvirt():
        response = api(ada).get(f"/api/v1/networks/{network.pk}/xml/")
    assert response.status_code == 200 and response.json()["xml"] == on_host
