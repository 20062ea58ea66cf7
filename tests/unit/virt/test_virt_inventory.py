"""The bulk inventory, read from test-driver node files: every field, the call count, and races."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from kvmweb import virt
from kvmweb.virt import connection, inventory, stats
from kvmweb.virt.xml import parse_xml
from tests.unit.virt.conftest import MakeNode
from tests.unit.virt.nodefile import (
    PAUSED,
    RUNNING,
    SHUTDOWN,
    SHUTOFF,
    NodeDomain,
    NodeNetwork,
    NodePool,
    NodeVolume,
)

WEB = NodeDomain(
    name="web",
    uuid="11111111-1111-4111-8111-111111111111",
    memory_kib=1048576,
    current_memory_kib=524288,
    vcpus=4,
    current_vcpus=2,
    arch="x86_64",
    title="Web server",
    description="Line one\nline two & more",
    seclabels=(
        ("selinux", "system_u:system_r:svirt_t:s0:c1,c2", "system_u:object_r:svirt_image_t:s0:c1,c2"),
        ("dac", "+107:+107", "+107:+107"),
    ),
)
DB = NodeDomain(name="db", uuid="22222222-2222-4222-8222-222222222222", runstate=PAUSED)
SAVED = NodeDomain(
    name="saved",
    uuid="33333333-3333-4333-8333-333333333333",
    runstate=SHUTOFF,
    managed_save=True,
    seclabels=(("apparmor", "libvirt-33333333-3333-4333-8333-333333333333", None),),
)
SCRATCH = NodeDomain(name="scratch", uuid="44444444-4444-4444-8444-444444444444", transient=True)

NETWORKS = (
    NodeNetwork(
        name="nat", uuid="aaaaaaaa-0000-4000-8000-000000000001", forward="nat", bridge="virbr1", ip="192.0.2.1"
    ),
    NodeNetwork(name="isolated", uuid="aaaaaaaa-0000-4000-8000-000000000002", bridge="virbr2"),
    NodeNetwork(name="lan", uuid="aaaaaaaa-0000-4000-8000-000000000003", forward="bridge", bridge="br0"),
    NodeNetwork(
        name="routed", uuid="aaaaaaaa-0000-4000-8000-000000000004", forward="route", bridge="virbr4", ip="198.51.100.1"
    ),
)

IMAGES = NodePool(
    name="images",
    path="/pools/images",
    uuid="bbbbbbbb-0000-4000-8000-000000000001",
    volumes=(
        NodeVolume(name="base.img", format="raw", capacity=10737418240, allocation=2147483648),
        NodeVolume(
            name="vm.qcow2",
            format="qcow2",
            capacity=10737418240,
            allocation=196608,
            backing="/pools/images/base.img",
        ),
    ),
)
SPARE = NodePool(name="spare", path="/pools/spare", uuid="bbbbbbbb-0000-4000-8000-000000000002")


@pytest.fixture
def lab(make_node: MakeNode) -> virt.HostTarget:
    """A host with four domains, four networks (one stopped) and two pools (one stopped)."""
    target = make_node(domains=(WEB, DB, SAVED, SCRATCH), networks=NETWORKS, pools=(IMAGES, SPARE))
    virt.set_autostart(target, WEB.uuid, enabled=True)
    conn = connection.get_connection(target)
    conn.networkLookupByName("nat").setAutostart(1)
    conn.networkLookupByName("routed").destroy()
    spare = conn.storagePoolLookupByName("spare")
    spare.destroy()
    spare.setAutostart(1)
    return target


def _without_xml(record: Any) -> dict[str, Any]:
    facts: dict[str, Any] = record.to_dict()
    del facts["xml"]
    facts.pop("xml_inactive", None)  # domains only; test_the_persistent_definition_is_kept_where_it_differs
    return facts


def test_inventory_reports_every_domain_field(lab: virt.HostTarget) -> None:
    domains = {record.name: record for record in virt.get_inventory(lab).domains}

    assert list(domains) == ["db", "saved", "scratch", "web"]
    web = domains["web"]
    assert isinstance(web.id, int)
    assert _without_xml(web) == {
        "uuid": WEB.uuid,
        "name": "web",
        "state": "running",
        "reason": "unknown",
        "id": web.id,
        "vcpus": 2,
        "memory_kib": 524288,
        "max_memory_kib": 1048576,
        "autostart": True,
        "persistent": True,
        "has_managed_save": False,
        "title": "Web server",
        "description": "Line one\nline two & more",
        "security_label": "system_u:system_r:svirt_t:s0:c1,c2",
        "security_model": "selinux",
        "os_type": "hvm",
        "arch": "x86_64",
        "domain_type": "test",
    }
    assert parse_xml(web.xml).findtext("uuid") == WEB.uuid
    assert _without_xml(domains["saved"]) == {
        "uuid": SAVED.uuid,
        "name": "saved",
        "state": "shutoff",
        "reason": "unknown",
        "id": None,
        "vcpus": 1,
        "memory_kib": 262144,
        "max_memory_kib": 262144,
        "autostart": False,
        "persistent": True,
        "has_managed_save": True,
        "title": None,
        "description": None,
        "security_label": "libvirt-33333333-3333-4333-8333-333333333333",
        "security_model": "apparmor",
        "os_type": "hvm",
        "arch": "i686",
        "domain_type": "test",
    }
    assert (domains["db"].state, domains["db"].persistent) == ("paused", True)
    assert (domains["scratch"].state, domains["scratch"].persistent) == ("running", False)
    assert (domains["db"].security_label, domains["db"].security_model) == (None, None)


def test_the_persistent_definition_is_kept_where_it_differs(lab: virt.HostTarget) -> None:
    redefined = virt.get_domain_xml(lab, WEB.uuid, inactive=True).replace(
        "<title>Web server</title>", "<title>Web server, after its next boot</title>"
    )
    virt.define_domain(lab, redefined)  # web runs on: the change waits in its persistent definition

    domains = {record.name: record for record in virt.get_inventory(lab).domains}

    web = domains["web"]
    assert web.xml_inactive == virt.get_domain_xml(lab, WEB.uuid, inactive=True)
    assert "after its next boot" in web.xml_inactive and "after its next boot" not in web.xml
    assert web.title == "Web server"  # the facts are the live ones
    # A paused domain is active too: its live XML carries an id that its definition does not.
    db = domains["db"]
    assert (parse_xml(db.xml).get("id"), parse_xml(db.xml_inactive).get("id")) == (str(db.id), None)
    # A shut-off domain's live XML is its definition, and a transient domain has none.
    assert (domains["saved"].xml_inactive, domains["scratch"].xml_inactive) == ("", "")
    assert domains["saved"].xml == virt.get_domain_xml(lab, SAVED.uuid, inactive=True)
    assert virt.get_domain_record(lab, WEB.uuid) == web


def test_inventory_reports_networks_with_their_forward_mode(lab: virt.HostTarget) -> None:
    networks = [_without_xml(record) for record in virt.get_inventory(lab).networks]

    assert networks == [
        {
            "uuid": NETWORKS[1].uuid,
            "name": "isolated",
            "active": True,
            "autostart": False,
            "persistent": True,
            "bridge": "virbr2",
            "forward_mode": "isolated",
        },
        {
            "uuid": NETWORKS[2].uuid,
            "name": "lan",
            "active": True,
            "autostart": False,
            "persistent": True,
            "bridge": "br0",
            "forward_mode": "bridge",
        },
        {
            "uuid": NETWORKS[0].uuid,
            "name": "nat",
            "active": True,
            "autostart": True,
            "persistent": True,
            "bridge": "virbr1",
            "forward_mode": "nat",
        },
        {
            "uuid": NETWORKS[3].uuid,
            "name": "routed",
            "active": False,
            "autostart": False,
            "persistent": True,
            "bridge": "virbr4",
            "forward_mode": "route",
        },
    ]


def test_inventory_reports_pools_and_the_volumes_of_active_ones(lab: virt.HostTarget) -> None:
    found = virt.get_inventory(lab)

    images, spare = found.pools
    assert _without_xml(images) == {
        "uuid": IMAGES.uuid,
        "name": "images",
        "type": "dir",
        "state": "running",
        "autostart": False,
        "persistent": True,
        # The test driver makes up its own pool sizes: a 100 GiB disk, minus what the volumes use.
        "capacity": 107374182400,
        "allocation": 2147483648 + 196608,
        "available": 107374182400 - 2147483648 - 196608,
        "target_path": "/pools/images",
    }
    assert _without_xml(spare) == {
        "uuid": SPARE.uuid,
        "name": "spare",
        "type": "dir",
        "state": "inactive",
        "autostart": True,
        "persistent": True,
        "capacity": None,
        "allocation": None,
        "available": None,
        "target_path": "/pools/spare",
    }
    assert [volume.to_dict() for volume in found.volumes] == [
        {
            "pool_uuid": IMAGES.uuid,
            "name": "base.img",
            "key": "/pools/images/base.img",
            "path": "/pools/images/base.img",
            "type": "file",
            "format": "raw",
            "capacity": 10737418240,
            "allocation": 2147483648,
            "backing_path": None,
            "encryption": None,
            "secret_uuid": None,
        },
        {
            "pool_uuid": IMAGES.uuid,
            "name": "vm.qcow2",
            "key": "/pools/images/vm.qcow2",
            "path": "/pools/images/vm.qcow2",
            "type": "file",
            "format": "qcow2",
            "capacity": 10737418240,
            "allocation": 196608,
            "backing_path": "/pools/images/base.img",
            "encryption": None,
            "secret_uuid": None,
        },
    ]


def test_single_records_match_the_inventory(lab: virt.HostTarget) -> None:
    found = virt.get_inventory(lab)

    assert [virt.get_domain_record(lab, record.uuid) for record in found.domains] == list(found.domains)
    assert [virt.get_network_record(lab, record.uuid) for record in found.networks] == list(found.networks)
    assert [virt.get_pool_record(lab, record.uuid) for record in found.pools] == list(found.pools)
    assert virt.get_pool_volumes(lab, IMAGES.uuid) == found.volumes
    assert virt.get_pool_volumes(lab, SPARE.uuid) == ()


def test_inventory_is_frozen_and_json_ready(lab: virt.HostTarget) -> None:
    found = virt.get_inventory(lab)

    assert json.loads(json.dumps(found.to_dict())) == found.to_dict()
    assert not hasattr(found.domains[0], "__dict__")
    with pytest.raises(AttributeError):
        found.domains[0].name = "renamed"  # type: ignore[misc]


def test_a_change_shows_in_the_next_record(lab: virt.HostTarget) -> None:
    virt.destroy_domain(lab, WEB.uuid)

    record = virt.get_domain_record(lab, WEB.uuid)

    assert (record.state, record.reason, record.id) == ("shutoff", "destroyed", None)


def test_unknown_or_malformed_uuids(lab: virt.HostTarget) -> None:
    unknown = "99999999-9999-4999-8999-999999999999"
    with pytest.raises(virt.NotFound):
        virt.get_domain_record(lab, unknown)
    with pytest.raises(virt.NotFound):
        virt.get_network_record(lab, unknown)
    with pytest.raises(virt.NotFound):
        virt.get_pool_record(lab, unknown)
    with pytest.raises(virt.InvalidArgument, match="is not a virtual machine UUID"):
        virt.get_domain_record(lab, "../etc")
    with pytest.raises(virt.InvalidArgument, match="is not a network UUID"):
        virt.get_network_record(lab, "nat")
    with pytest.raises(virt.InvalidArgument, match="is not a storage pool UUID"):
        virt.get_pool_volumes(lab, "images")


def test_hundred_domains_are_inventoried_in_bulk(make_node: MakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    states = (RUNNING, PAUSED, SHUTOFF, SHUTDOWN)
    domains = tuple(
        NodeDomain(name=f"vm-{index:03d}", runstate=states[index % 4], managed_save=index % 8 == 2)
        for index in range(100)
    )
    target = make_node(domains=domains)
    started = time.perf_counter()
    connection.get_connection(target)
    opened = time.perf_counter()

    found = virt.get_inventory(target)

    done = time.perf_counter()
    assert len(found.domains) == 100
    assert Counter(record.state for record in found.domains) == {
        "running": 25,
        "paused": 25,
        "shutoff": 25,
        "shutdown": 25,
    }
    assert [record.name for record in found.domains] == [domain.name for domain in domains]
    assert sum(record.has_managed_save for record in found.domains) == 13  # shut-off ones only
    with capsys.disabled():
        print(
            f"\n[inventory] 100 domains: get_inventory {1000 * (done - opened):.1f} ms "
            f"(opening the node file {1000 * (opened - started):.1f} ms)"
        )


# Round trips, counted at the connection: the inventory must not grow an N+1.

_LOCAL_GETTERS = frozenset({"UUIDString", "name", "ID", "key"})  # read from the object, no round trip


class Recorder:
    """Wraps a libvirt object, counting the methods called on it and on the objects it returns."""

    def __init__(self, wrapped: Any, calls: Counter[str], intercept: dict[str, Callable[..., Any]]) -> None:
        self._wrapped = wrapped
        self._calls = calls
        self._intercept = intercept

    def __getattr__(self, attribute: str) -> Any:
        method = getattr(self._wrapped, attribute)

        def call(*args: Any, **kwargs: Any) -> Any:
            if attribute not in _LOCAL_GETTERS:
                self._calls[attribute] += 1
            result = self._intercept.get(attribute, method)(*args, **kwargs)
            return self._wrap(result)

        return call

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._wrap(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self._wrap(item) for item in value)
        if type(value).__name__.startswith("vir"):
            return Recorder(value, self._calls, {})
        return value


@contextmanager
def _recording(
    monkeypatch: pytest.MonkeyPatch, module: Any, intercept: dict[str, Callable[..., Any]] | None = None
) -> Iterator[Counter[str]]:
    calls: Counter[str] = Counter()
    real_connect = module.connect

    @contextmanager
    def connect(target: virt.HostTarget) -> Iterator[Recorder]:
        with real_connect(target) as conn:
            yield Recorder(conn, calls, intercept or {})

    monkeypatch.setattr(module, "connect", connect)
    yield calls


def test_inventory_round_trips_are_12_plus_one_per_object_and_per_running_persistent_domain_or_network(
    lab: virt.HostTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _recording(monkeypatch, inventory) as calls:
        virt.get_inventory(lab)

    # 4 domains (web and db active and persistent: their definitions too), 4 networks (3 active and
    # persistent: their definitions too), 2 pools (1 active), 2 volumes.
    assert calls == {
        "getAllDomainStats": 1,
        "listAllDomains": 3,
        "listAllNetworks": 4,
        "listAllStoragePools": 4,
        "info": 2,
        "listAllVolumes": 1,
        "XMLDesc": 4 + 2 + 4 + 3 + 2 + 2,
    }


def test_domain_stats_are_one_call(target: virt.HostTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    with _recording(monkeypatch, stats) as calls:
        virt.get_domain_stats(target)

    assert calls == {"getAllDomainStats": 1}


def test_domain_gone_between_listing_and_xml_is_left_out(lab: virt.HostTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = connection.get_connection(lab)

    def list_then_undefine(*args: Any) -> Any:
        records = conn.getAllDomainStats(*args)
        conn.lookupByUUIDString(SAVED.uuid).undefineFlags(1)  # VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        return records

    with _recording(monkeypatch, inventory, {"getAllDomainStats": list_then_undefine}):
        names = [record.name for record in virt.get_inventory(lab).domains]

    assert names == ["db", "scratch", "web"]


def test_host_refusing_nowait_is_asked_again_without_it(target: virt.HostTarget) -> None:
    conn = connection.get_connection(target)
    with pytest.raises(virt.VirtError) as refused, virt.errors.translated():
        conn.getAllDomainStats(0, 1 << 20)  # an unknown flag, refused as invalid argument
    refusal = refused.value.__cause__
    asked: list[int] = []

    class OldHost:
        def getAllDomainStats(self, groups: int, flags: int) -> Any:
            asked.append(flags)
            if len(asked) == 1:
                raise refusal  # type: ignore[misc]
            return conn.getAllDomainStats(groups, flags)

    records = stats.all_domain_stats(OldHost(), 1)

    assert [dom.name() for dom, _stats in records] == ["test"]
    assert asked == [1 << 29, 0]  # VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT, then nothing


def test_sizes_come_from_the_xml_when_the_stats_leave_them_out(lab: virt.HostTarget) -> None:
    conn = connection.get_connection(lab)
    dom = conn.lookupByUUIDString(WEB.uuid)

    record = inventory._domain_record(
        dom, {}, dom.XMLDesc(0), "", persistent=True, autostart=False, has_managed_save=False
    )

    assert (record.state, record.reason) == ("nostate", "unknown")
    assert (record.vcpus, record.memory_kib, record.max_memory_kib) == (2, 524288, 1048576)
