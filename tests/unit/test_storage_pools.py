"""Storage pools on libvirt's test driver: the adapter, the service with its checks, the API and pages.

ada administers; alice is a member of the host (she sees its pools but may not change them); bob is not.
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
from kvmweb.errors import Conflict, Forbidden, Invalid
from kvmweb.operations.models import Operation
from kvmweb.virt import pools as virt_pools
from kvmweb.virt import volumes
from kvmweb.virt.xml import DiskSpec, DomainSpec, PoolSpec, VolumeSpec, build_domain_xml, build_pool_xml
from storage.models import StoragePool, Volume
from storage.pools import pool_action, pool_define
from tests.factories import PASSWORD, make_host
from tests.runs import actor_of, run

TEST_URI = "test:///default"
TARGET = virt.HostTarget(TEST_URI)


@pytest.fixture
def lab(alice):  # type: ignore[no-untyped-def]
    return make_host("testhost", uri=TEST_URI, members=(alice,))


@pytest.fixture(autouse=True)
def _clean_test_driver() -> Iterator[None]:
    before_pools = {p.uuid for p in virt_pools.list_pools(TARGET)}
    before_domains = {d.uuid for d in virt.list_domains(TARGET)}
    yield
    for domain in virt.list_domains(TARGET):
        if domain.uuid not in before_domains:
            if domain.state != "shutoff":
                virt.destroy_domain(TARGET, domain.uuid)
            virt.undefine_domain(TARGET, domain.uuid)
    for pool in virt_pools.list_pools(TARGET):
        if pool.uuid not in before_pools:
            virt_pools.undefine_pool(TARGET, pool.uuid, delete_contents=pool.state == "running")
    virt.close_all()


def unique(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dir_data(name: str) -> dict[str, Any]:
    return {"type": "dir", "name": name, "target_path": f"/var/lib/libvirt/images/{name}"}


def defined(ada: Any, lab: Any, name: str) -> StoragePool:
    op = run(pool_define(actor=actor_of(ada), host=lab, data=dir_data(name)))
    assert op.status == Operation.Status.SUCCEEDED, op.error
    return StoragePool.objects.get(host=lab, name=name)


def act(ada: Any, pool: StoragePool, action: str, **params: Any) -> StoragePool:
    op = run(pool_action(actor=actor_of(ada), pool=pool, action=action, params=params))
    assert op.status == Operation.Status.SUCCEEDED, op.error
    pool.refresh_from_db()
    return pool


def on_host(name: str) -> virt.PoolRecord:
    """The pool as libvirt reports it now."""
    uuid = virt_pools.get_pool_uuid(TARGET, name)
    assert uuid is not None
    return virt.get_pool_record(TARGET, uuid)


# The spec and its XML


def test_dir_spec_builds_pool_xml() -> None:
    xml = build_pool_xml(PoolSpec(name="images", type="dir", target_path="/srv/images"))
    assert (
        xml
        == '<pool type="dir">\n  <name>images</name>\n  <target>\n    <path>/srv/images</path>\n  </target>\n</pool>\n'
    )


def test_netfs_iscsi_logical_fs_specs_build_their_sources() -> None:
    netfs = build_pool_xml(
        PoolSpec(name="nas", type="netfs", source_host="nas.example", source_dir="/export/vm", target_path="/mnt/nas")
    )
    assert '<host name="nas.example" />' in netfs and '<dir path="/export/vm" />' in netfs
    assert '<format type="nfs" />' in netfs
    iscsi = build_pool_xml(PoolSpec(name="san", type="iscsi", source_host="10.0.0.5", iqn="iqn.2004-04.com.ex:lun"))
    assert '<device path="iqn.2004-04.com.ex:lun" />' in iscsi and "<path>/dev/disk/by-path</path>" in iscsi
    lvm = build_pool_xml(PoolSpec(name="vg", type="logical", source_name="vg0", source_devices=("/dev/sdc",)))
    assert "<name>vg0</name>" in lvm and "<path>/dev/vg0</path>" in lvm and '<device path="/dev/sdc" />' in lvm
    fs = build_pool_xml(
        PoolSpec(name="disk", type="fs", source_devices=("/dev/sdb1",), source_format="xfs", target_path="/mnt/d")
    )
    assert '<device path="/dev/sdb1" />' in fs and '<format type="xfs" />' in fs


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"name": "../etc", "type": "dir", "target_path": "/srv/x"}, "Pool name"),
        ({"name": "a/b", "type": "dir", "target_path": "/srv/x"}, "Pool name"),
        ({"name": "ok", "type": "dir", "target_path": "srv/x"}, "absolute path"),
        ({"name": "ok", "type": "dir", "target_path": "/srv/../etc"}, "'..'"),
        ({"name": "ok", "type": "dir"}, "Target path is required"),
        ({"name": "ok", "type": "dir", "target_path": "/"}, "root directory"),
        ({"name": "ok", "type": "dir", "target_path": "/srv//x"}, "empty parts"),
        ({"name": "ok", "type": "dir", "target_path": "/srv/x", "source_host": "nas"}, "takes no source host"),
        ({"name": "ok", "type": "netfs", "source_dir": "/e", "target_path": "/m"}, "needs a host"),
        ({"name": "ok", "type": "netfs", "source_host": "-o x", "source_dir": "/e", "target_path": "/m"}, "Host"),
        ({"name": "ok", "type": "iscsi", "source_host": "san", "iqn": "not-an-iqn"}, "IQN"),
        ({"name": "ok", "type": "logical"}, "volume group"),
        ({"name": "ok", "type": "fs", "target_path": "/m"}, "exactly one source device"),
        ({"name": "ok", "type": "zfs"}, "Pool type"),
    ],
)
def test_bad_specs_are_refused(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(virt.InvalidArgument, match=words.replace("(", r"\(").replace(".", r"\.")):
        PoolSpec(**fields)


# The adapter


def test_adapter_defines_builds_starts_and_undefines_a_dir_pool() -> None:
    name = unique()
    record = virt_pools.define_pool(TARGET, PoolSpec(name=name, type="dir", target_path=f"/srv/{name}"))
    assert (record.name, record.state, record.type, record.target_path) == (name, "inactive", "dir", f"/srv/{name}")
    virt_pools.build_pool(TARGET, record.uuid)
    assert virt_pools.start_pool(TARGET, record.uuid).state == "running"
    assert virt_pools.set_pool_autostart(TARGET, record.uuid, True).autostart is True
    with pytest.raises(virt.AlreadyExists):
        virt_pools.define_pool(TARGET, PoolSpec(name=name, type="dir", target_path="/srv/other"))
    assert virt_pools.undefine_pool(TARGET, record.uuid) == []
    assert virt_pools.get_pool_uuid(TARGET, name) is None


def test_adapter_defines_other_types_from_checked_xml() -> None:
    name = unique()
    record = virt_pools.define_pool(
        TARGET, f'<pool type="dir"><name>{name}</name><target><path>/srv/{name}</path></target></pool>'
    )
    assert record.name == name
    with pytest.raises(virt.UnsafeXML):
        virt_pools.define_pool(TARGET, '<!DOCTYPE x [<!ENTITY e "x">]><pool type="dir"><name>&e;</name></pool>')
    with pytest.raises(virt.InvalidArgument, match="<pool>"):
        virt_pools.define_pool(TARGET, "<network><name>n</name></network>")


def test_adapter_undefine_with_delete_contents_deletes_the_volumes() -> None:
    name = unique()
    record = virt_pools.define_pool(TARGET, PoolSpec(name=name, type="dir", target_path=f"/srv/{name}"))
    virt_pools.start_pool(TARGET, record.uuid)
    made = volumes.create_volume(TARGET, name, VolumeSpec(name="a.qcow2", capacity_bytes=1 << 20))
    deleted = virt_pools.undefine_pool(TARGET, record.uuid, delete_contents=True)
    assert deleted == [made.path]
    assert virt_pools.get_pool_uuid(TARGET, name) is None


# The service: the whole lifecycle through operations


def test_admin_defines_starts_refreshes_autostarts_stops_and_undefines_a_dir_pool(ada, lab, queued) -> None:  # type: ignore[no-untyped-def]
    name = unique()
    pool = defined(ada, lab, name)
    assert (pool.state, pool.type, pool.target_path) == ("inactive", "dir", f"/var/lib/libvirt/images/{name}")
    assert on_host(name).state == "inactive"
    pool = act(ada, pool, "build")
    pool = act(ada, pool, "start")
    assert pool.state == "running" and on_host(name).state == "running"
    volumes.create_volume(TARGET, name, VolumeSpec(name="disk.qcow2", capacity_bytes=1 << 20))
    pool = act(ada, pool, "refresh")
    assert list(Volume.objects.filter(pool=pool).values_list("name", flat=True)) == ["disk.qcow2"]
    pool = act(ada, pool, "autostart-on")
    assert pool.autostart is True and on_host(name).autostart is True
    pool = act(ada, pool, "autostart-off")
    assert pool.autostart is False and on_host(name).autostart is False
    pool = act(ada, pool, "stop")
    assert pool.state == "inactive" and on_host(name).state == "inactive"
    pool = act(ada, pool, "undefine")
    assert pool.gone_since is not None
    assert virt_pools.get_pool_uuid(TARGET, name) is None


def test_actions_are_checked_against_the_pool_state(ada, lab, queued) -> None:  # type: ignore[no-untyped-def]
    pool = defined(ada, lab, unique())
    for action in ("stop", "refresh", "autostart-off"):
        with pytest.raises(Conflict):
            pool_action(actor=actor_of(ada), pool=pool, action=action)
    with pytest.raises(Invalid, match="Unknown pool action"):
        pool_action(actor=actor_of(ada), pool=pool, action="explode")
    assert list(Operation.objects.values_list("kind", flat=True)) == ["pool.define"]


@pytest.mark.parametrize(
    "data",
    [
        {"type": "dir", "name": "../x", "target_path": "/srv/x"},
        {"type": "dir", "name": "ok", "target_path": "/srv/../etc"},
        {"type": "dir", "name": "ok", "target_path": "relative"},
        {"type": "netfs", "name": "ok", "target_path": "/m", "source_dir": "/e"},
        {"type": "xml", "xml": "<pool type='dir'><name>a/b</name></pool>"},
        {"type": "xml", "xml": "<pool type='dir'><name>ok</name><target><path>/a/../b</path></target></pool>"},
        {"type": "bogus", "name": "ok"},
    ],
)
def test_bad_definitions_are_refused_before_libvirt(ada, lab, queued, data) -> None:  # type: ignore[no-untyped-def]
    before = virt_pools.list_pools(TARGET)
    with pytest.raises(Invalid):
        pool_define(actor=actor_of(ada), host=lab, data=data)
    assert queued == [] and not Operation.objects.exists()
    assert virt_pools.list_pools(TARGET) == before


def test_defining_a_taken_name_is_refused(ada, lab, queued) -> None:  # type: ignore[no-untyped-def]
    name = unique()
    defined(ada, lab, name)
    with pytest.raises(Conflict, match="already has a storage pool"):
        pool_define(actor=actor_of(ada), host=lab, data=dir_data(name))


def test_undefine_is_refused_while_a_vm_uses_one_of_its_volumes(ada, lab, queued) -> None:  # type: ignore[no-untyped-def]
    name = unique()
    pool = act(ada, defined(ada, lab, name), "start")
    volumes.create_volume(TARGET, name, VolumeSpec(name="d.qcow2", capacity_bytes=1 << 20))
    vm_name = unique("vm")
    spec = DomainSpec(
        name=vm_name, uuid=str(uuid.uuid4()), memory_mib=64, vcpus=1,
        disks=(DiskSpec(pool=name, volume="d.qcow2"),),
    )  # fmt: skip
    virt.define_domain(TARGET, build_domain_xml(spec))
    host_reconcile(host=lab, inventory=virt.get_inventory(TARGET))
    with pytest.raises(Conflict, match=vm_name):
        pool_action(actor=actor_of(ada), pool=pool, action="undefine")
    assert virt_pools.get_pool_uuid(TARGET, name) is not None
    page = login(ada).get(f"/storage/pools/{pool.pk}/").content.decode()
    assert "data-pool-users" in page and f"In use: {vm_name}" in page
    assert f'action="/storage/pools/{pool.pk}/actions/undefine/"' not in page
    api_refusal = api(ada).post(f"/api/v1/pools/{pool.pk}/actions/undefine/")
    assert api_refusal.status_code == 409
    assert api_refusal.json()["error"]["details"] == {"vms": [vm_name]}


def test_deleting_contents_needs_the_pool_name(ada, lab, queued) -> None:  # type: ignore[no-untyped-def]
    name = unique()
    pool = act(ada, defined(ada, lab, name), "start")
    volumes.create_volume(TARGET, name, VolumeSpec(name="d.qcow2", capacity_bytes=1 << 20))
    with pytest.raises(Invalid, match="Type the pool's name"):
        pool_action(actor=actor_of(ada), pool=pool, action="undefine", params={"delete_contents": True, "confirm": "x"})
    op = run(
        pool_action(actor=actor_of(ada), pool=pool, action="undefine", params={"delete_contents": "1", "confirm": name})
    )
    assert op.status == Operation.Status.SUCCEEDED, op.error
    assert op.result["deleted"] == [f"/var/lib/libvirt/images/{name}/d.qcow2"]
    assert virt_pools.get_pool_uuid(TARGET, name) is None


def test_members_and_others_may_not_manage_pools(ada, alice, bob, lab, queued) -> None:  # type: ignore[no-untyped-def]
    pool = defined(ada, lab, unique())
    for user in (alice, bob):
        with pytest.raises(Forbidden):
            pool_define(actor=actor_of(user), host=lab, data=dir_data(unique()))
        with pytest.raises(Forbidden):
            pool_action(actor=actor_of(user), pool=pool, action="start")


# The API


def api(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


def test_api_define_list_get_and_act(ada, lab, queued) -> None:  # type: ignore[no-untyped-def]
    name = unique()
    client = api(ada)
    response = client.post("/api/v1/pools/", {"host": lab.pk, **dir_data(name)}, content_type="application/json")
    assert response.status_code == 202, response.content
    assert response.json()["operation"]["kind"] == "pool.define"
    run(Operation.objects.get(pk=response.json()["operation"]["id"]))
    pool = StoragePool.objects.get(host=lab, name=name)
    listed = client.get(f"/api/v1/pools/?host={lab.pk}").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert name in [row["name"] for row in rows]
    item = client.get(f"/api/v1/pools/{pool.pk}/").json()
    assert (item["name"], item["type"], item["state"], item["host"]) == (name, "dir", "inactive", lab.pk)
    assert "<pool" in item["xml"]
    response = client.post(f"/api/v1/pools/{pool.pk}/actions/start/")
    assert response.status_code == 202 and response.json()["operation"]["kind"] == "pool.start"
    bad = client.post("/api/v1/pools/", {"host": lab.pk, **dir_data("../x")}, content_type="application/json")
    assert bad.status_code == 400


def test_api_access(ada, alice, bob, lab, queued) -> None:  # type: ignore[no-untyped-def]
    pool = defined(ada, lab, unique())
    body = {"host": lab.pk, **dir_data(unique())}
    anonymous = Client()
    assert anonymous.get("/api/v1/pools/").status_code == 401
    assert anonymous.get(f"/api/v1/pools/{pool.pk}/").status_code == 401
    assert anonymous.post("/api/v1/pools/", body, content_type="application/json").status_code == 401
    assert anonymous.post(f"/api/v1/pools/{pool.pk}/actions/start/").status_code == 401
    member = api(alice)
    assert member.get(f"/api/v1/pools/{pool.pk}/").status_code == 200
    assert member.post("/api/v1/pools/", body, content_type="application/json").status_code == 403
    assert member.post(f"/api/v1/pools/{pool.pk}/actions/start/").status_code == 403
    other = api(bob)
    rows = other.get("/api/v1/pools/").json()
    assert (rows["results"] if isinstance(rows, dict) else rows) == []
    assert other.get(f"/api/v1/pools/{pool.pk}/").status_code == 404
    assert other.post("/api/v1/pools/", body, content_type="application/json").status_code == 404
    assert other.post(f"/api/v1/pools/{pool.pk}/actions/start/").status_code == 404
    assert Operation.objects.filter(kind="pool.start").count() == 0


# The pages


def login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


def test_define_pool_page_defines_a_pool(ada, lab, queued) -> None:  # type: ignore[no-untyped-def]
    client = login(ada)
    page = client.get("/storage/pools/new/")
    assert page.status_code == 200 and "Define a storage pool" in page.content.decode()
    name = unique()
    response = client.post("/storage/pools/new/", {"host": lab.pk, **dir_data(name)})
    assert response.status_code == 302
    op = run(Operation.objects.get(kind="pool.define"))
    assert op.status == Operation.Status.SUCCEEDED and StoragePool.objects.filter(name=name).exists()
    refused = client.post("/storage/pools/new/", {"host": lab.pk, **dir_data(name), "target_path": "/a/../b"})
    assert refused.status_code == 400 and "&#x27;..&#x27;" in refused.content.decode()


def test_pool_page_shows_actions_and_runs_them(ada, lab, queued) -> None:  # type: ignore[no-untyped-def]
    name = unique()
    pool = defined(ada, lab, name)
    client = login(ada)
    page = client.get(f"/storage/pools/{pool.pk}/").content.decode()
    assert f'action="/storage/pools/{pool.pk}/actions/start/"' in page
    assert f'action="/storage/pools/{pool.pk}/actions/undefine/"' in page
    assert f'action="/storage/pools/{pool.pk}/actions/stop/"' not in page
    assert client.post(f"/storage/pools/{pool.pk}/actions/start/").status_code == 302
    assert run(Operation.objects.get(kind="pool.start")).status == Operation.Status.SUCCEEDED
    pool.refresh_from_db()
    assert pool.state == "running"
    client.post(f"/storage/pools/{pool.pk}/actions/undefine/", {"delete_contents": "1", "confirm": "wrong"})
    assert not Operation.objects.filter(kind="pool.undefine").exists()


def test_page_access(ada, alice, bob, lab, queued) -> None:  # type: ignore[no-untyped-def]
    pool = defined(ada, lab, unique())
    anonymous = Client()
    assert anonymous.get("/storage/pools/new/").status_code == 302
    assert anonymous.post(f"/storage/pools/{pool.pk}/actions/start/").status_code == 302
    member = login(alice)
    assert member.get("/storage/pools/new/").status_code == 403
    assert member.post("/storage/pools/new/", {"host": lab.pk, **dir_data(unique())}).status_code == 403
    page = member.get(f"/storage/pools/{pool.pk}/")
    assert page.status_code == 200 and "/actions/start/" not in page.content.decode()
    assert member.post(f"/storage/pools/{pool.pk}/actions/start/").status_code == 403
    other = login(bob)
    assert other.get(f"/storage/pools/{pool.pk}/").status_code == 404
    assert other.post(f"/storage/pools/{pool.pk}/actions/start/").status_code == 404
    assert not Operation.objects.filter(kind="pool.start").exists()


def test_undefine_checks_the_host_again_when_it_runs(ada, lab, queued) -> None:  # type: ignore[no-untyped-def]
    name = unique()
    pool = act(ada, defined(ada, lab, name), "start")
    volumes.create_volume(TARGET, name, VolumeSpec(name="d.qcow2", capacity_bytes=1 << 20))
    op = pool_action(actor=actor_of(ada), pool=pool, action="undefine", params={"delete_contents": 1, "confirm": name})
    vm_name = unique("vm")  # given a disk of the pool after the request was accepted, unknown to the database
    spec = DomainSpec(
        name=vm_name, uuid=str(uuid.uuid4()), memory_mib=64, vcpus=1, disks=(DiskSpec(pool=name, volume="d.qcow2"),)
    )
    virt.define_domain(TARGET, build_domain_xml(spec))
    op = run(op)
    assert op.status == Operation.Status.FAILED and vm_name in op.error
    assert on_host(name).state == "running"
    assert [v.name for v in virt.get_pool_volumes(TARGET, on_host(name).uuid)] == ["d.qcow2"]
