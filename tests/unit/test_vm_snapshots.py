"""Snapshots on libvirt's test driver: the typed XML, the tree rows, create/revert/delete as operations,
the guardrails (refused before libvirt is asked) and access to every endpoint and page.

alice owns the VMs and is a member of the host, bob is not, ada administers. The test driver keeps
internal snapshots but refuses disk-only ones, so external snapshots appear here as stored rows.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.errors import Conflict, Invalid
from kvmweb.operations.models import Operation
from kvmweb.virt import snapshots as virt_snapshots
from kvmweb.virt import volumes
from kvmweb.virt.xml import (
    DiskSpec,
    DomainSpec,
    ExternalDisk,
    SnapshotDiskInfo,
    SnapshotSpec,
    VolumeSpec,
    build_domain_xml,
    build_snapshot_xml,
    snapshot_info,
)
from storage.models import Volume
from tests.factories import PASSWORD, make_host
from tests.locks import a_query_waits_on_a_lock
from tests.runs import actor_of, run
from tests.stack import wait_until
from vms.actions import ACTIONS, vm_action
from vms.models import VirtualMachine
from vms.snapshot_models import Snapshot
from vms.snapshots import snapshots_refresh, snapshots_store

TEST_URI = "test:///default"
TARGET = virt.HostTarget(TEST_URI)
POOL = "default-pool"


@pytest.fixture
def lab(alice):  # type: ignore[no-untyped-def]
    return make_host("testhost", uri=TEST_URI, members=(alice,))


@pytest.fixture(autouse=True)
def _clean_test_driver() -> Iterator[None]:
    before_domains = {d.uuid for d in virt.list_domains(TARGET)}
    before_volumes = {v.path for v in volumes.host_volumes(TARGET)}
    yield
    for domain in virt.list_domains(TARGET):
        if domain.uuid not in before_domains:
            if domain.state != "shutoff":
                virt.destroy_domain(TARGET, domain.uuid)
            virt.undefine_domain(TARGET, domain.uuid)
    for path in {v.path for v in volumes.host_volumes(TARGET)} - before_volumes:
        volumes.delete_volume(TARGET, path or "")
    virt.close_all()


def make_guest(host: Any, owner: Any, *, fmt: str = "qcow2", running: bool = False) -> VirtualMachine:
    name = f"s-{uuid.uuid4().hex[:8]}"
    volume = f"{name}.{fmt}"
    volumes.create_volume(TARGET, POOL, VolumeSpec(name=volume, capacity_bytes=16 << 20, format=fmt))  # type: ignore[arg-type]
    disk = DiskSpec(pool=POOL, volume=volume, format=fmt)  # type: ignore[arg-type]
    spec = DomainSpec(name=name, uuid=str(uuid.uuid4()), memory_mib=128, vcpus=1, disks=(disk,))
    summary = virt.define_domain(TARGET, build_domain_xml(spec))
    if running:
        virt.start_domain(TARGET, summary.uuid)
    host_reconcile(host=host, inventory=virt.get_inventory(TARGET))
    vm = VirtualMachine.objects.get(uuid=summary.uuid)
    vm.owner = owner
    vm.save(update_fields=["owner"])
    return vm


def take(vm: VirtualMachine, user: Any, name: str, **params: Any) -> Any:
    op = run(vm_action(actor=actor_of(user), vm=fresh(vm), action="snapshot-create", params={"name": name, **params}))
    assert op.status == "succeeded", op.error
    return op


def fresh(vm: VirtualMachine) -> VirtualMachine:
    return VirtualMachine.objects.select_related("host").get(pk=vm.pk)


def tree(vm: VirtualMachine) -> list[tuple[str, int, bool]]:
    return [(row.name, row.depth, row.is_current) for row in Snapshot.objects.filter(vm=vm)]


def external_row(vm: VirtualMachine, name: str, parent: str | None = None) -> None:
    """Rows as a disk-only snapshot leaves them (the test driver cannot take one)."""
    records = [
        virt_snapshots.SnapshotRecord(
            name=row.name,
            parent=row.parent_name or None,
            description=row.description,
            state=row.state,
            created=row.created,
            current=False,
            has_memory=row.has_memory,
            external=row.external,
            disks=tuple(SnapshotDiskInfo(d["target_dev"], d["kind"], d["path"]) for d in row.disks),
        )
        for row in Snapshot.objects.filter(vm=vm)
    ]
    overlay = SnapshotDiskInfo("vda", "external", f"/pool/{vm.name}.{name}.qcow2")
    records.append(
        virt_snapshots.SnapshotRecord(
            name, parent, "", "disk-snapshot", datetime.now(tz=UTC), True, False, True, (overlay,)
        )
    )
    snapshots_store(vm, records)


def api(user: Any) -> Client:
    if user is None:
        return Client()
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")


def page(user: Any) -> Client:
    client = Client()
    if user is not None:
        client.login(username=user.username, password=PASSWORD)
    return client


# -- typed XML ----------------------------------------------------------------------------------------


def test_disk_only_snapshot_xml_names_each_overlay() -> None:
    spec = SnapshotSpec(
        name="before-upgrade",
        description="kernel 6.8",
        disk_only=True,
        external_disks=(ExternalDisk("vda", "/images/web.before-upgrade.qcow2"),),
        skipped_disks=("sda",),
    )
    assert build_snapshot_xml(spec) == (
        "<domainsnapshot>\n"
        "  <name>before-upgrade</name>\n"
        "  <description>kernel 6.8</description>\n"
        '  <memory snapshot="no" />\n'
        "  <disks>\n"
        '    <disk name="vda" snapshot="external">\n'
        '      <driver type="qcow2" />\n'
        '      <source file="/images/web.before-upgrade.qcow2" />\n'
        "    </disk>\n"
        '    <disk name="sda" snapshot="no" />\n'
        "  </disks>\n"
        "</domainsnapshot>\n"
    )


def test_snapshot_xml_reads_back_parent_memory_and_overlays() -> None:
    info = snapshot_info(
        "<domainsnapshot><name>b</name><parent><name>a</name></parent><state>disk-snapshot</state>"
        "<creationTime>1700000000</creationTime><memory snapshot='no'/>"
        "<disks><disk name='vda' snapshot='external'><source file='/i/x.b.qcow2'/></disk></disks>"
        "<domain><devices><disk><target dev='vda'/></disk></devices></domain></domainsnapshot>"
    )
    assert (info.name, info.parent, info.state, info.created, info.memory) == (
        "b",
        "a",
        "disk-snapshot",
        1700000000,
        "no",
    )
    assert info.disks == (SnapshotDiskInfo("vda", "external", "/i/x.b.qcow2"),)
    assert info.external


@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden", "x" * 65, "sp ace"])
def test_unusable_snapshot_names_are_refused(name: str) -> None:
    with pytest.raises(virt.InvalidArgument):
        SnapshotSpec(name=name)


# -- lifecycle on the test driver ---------------------------------------------------------------------


def test_owner_snapshots_a_running_vm_with_its_memory(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice, running=True)
    op = take(vm, alice, "first", description="clean install")
    assert op.result == {"snapshot": "first", "external": False, "memory": True, "overlays": []}
    (record,) = virt_snapshots.list_snapshots(TARGET, str(vm.uuid))
    assert (record.name, record.state, record.has_memory, record.current) == ("first", "running", True, True)
    row = Snapshot.objects.get(vm=vm)
    assert (row.name, row.description, row.state, row.has_memory, row.is_current, row.external) == (
        "first",
        "clean install",
        "running",
        True,
        True,
        False,
    )


def test_snapshots_form_a_tree_with_the_current_one_marked(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    take(vm, alice, "base")
    take(vm, alice, "left")
    op = run(vm_action(actor=actor_of(alice), vm=fresh(vm), action="snapshot-revert", params={"snapshot": "base"}))
    assert op.status == "succeeded", op.error
    take(vm, alice, "right")
    assert tree(vm) == [("base", 0, False), ("left", 1, False), ("right", 1, True)]


def test_revert_brings_back_the_state_captured(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    take(vm, alice, "off")
    virt.start_domain(TARGET, str(vm.uuid))
    take(vm, alice, "on")
    op = run(vm_action(actor=actor_of(alice), vm=fresh(vm), action="snapshot-revert", params={"snapshot": "off"}))
    assert op.status == "succeeded", op.error
    assert virt.domain_state(TARGET, str(vm.uuid)).state == "shutoff"
    assert fresh(vm).state == "shutoff"
    op = run(vm_action(actor=actor_of(alice), vm=fresh(vm), action="snapshot-revert", params={"snapshot": "on"}))
    assert op.status == "succeeded", op.error
    assert op.result == {"snapshot": "on", "state": "running"}
    assert virt.domain_state(TARGET, str(vm.uuid)).state == "running"
    assert [row.name for row in Snapshot.objects.filter(vm=vm, is_current=True)] == ["on"]


@pytest.mark.parametrize(
    ("children", "expected"),
    [("none", [("a1", 0, False), ("a2", 0, False)]), ("with", []), ("only", [("a", 0, True)])],
)
def test_delete_one_with_or_only_its_children(lab, alice, queued, children, expected):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    take(vm, alice, "a")
    take(vm, alice, "a1")
    run(vm_action(actor=actor_of(alice), vm=fresh(vm), action="snapshot-revert", params={"snapshot": "a"}))
    take(vm, alice, "a2")
    run(vm_action(actor=actor_of(alice), vm=fresh(vm), action="snapshot-revert", params={"snapshot": "a"}))
    params = {"snapshot": "a", "children": children}
    op = run(vm_action(actor=actor_of(alice), vm=fresh(vm), action="snapshot-delete", params=params))
    assert op.status == "succeeded", op.error
    assert tree(vm) == expected
    on_host = sorted(record.name for record in virt_snapshots.list_snapshots(TARGET, str(vm.uuid)))
    assert on_host == [name for name, _depth, _current in expected]


def test_refresh_reads_snapshots_taken_outside_kvmweb(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    virt_snapshots.create_snapshot(TARGET, str(vm.uuid), SnapshotSpec(name="by-virsh"))
    assert tree(vm) == []
    op = run(vm_action(actor=actor_of(alice), vm=fresh(vm), action="snapshot-refresh"))
    assert op.status == "succeeded", op.error
    assert tree(vm) == [("by-virsh", 0, True)]


# -- refusals and guardrails, before libvirt ------------------------------------------------------


def refused(vm: VirtualMachine, action: str, **params: Any) -> str:
    with pytest.raises((Invalid, Conflict)) as info:
        vm_action(actor=actor_of(vm.owner), vm=fresh(vm), action=action, params=params)
    return str(info.value.message)


def test_bad_input_is_refused_in_plain_words(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice, running=True)
    take(vm, alice, "one")
    assert "not a usable snapshot name" in refused(vm, "snapshot-create", name="../one")
    assert refused(vm, "snapshot-create", name="one") == f"{vm.name} already has a snapshot named one."
    assert "always includes its memory" in refused(vm, "snapshot-create", name="two", memory="off")
    assert refused(vm, "snapshot-revert", snapshot="nope") == f"{vm.name} has no snapshot named 'nope'."
    assert refused(vm, "snapshot-delete", snapshot="one", children="some") == "children is none, with or only."
    assert refused(vm, "snapshot-delete", snapshot="one", children="only") == "one has no child snapshots to delete."
    assert "an internal snapshot, with no overlay" in refused(vm, "snapshot-commit", snapshot="one")
    assert ops(vm) == ["vm.snapshot-create"]  # only the first snapshot went to a worker


def test_a_raw_disk_vm_refuses_internal_snapshots_and_offers_conversion(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice, fmt="raw")
    message = refused(vm, "snapshot-create", name="x")
    assert message.startswith(f"Cannot take an internal snapshot: {vm.name} has a raw disk: vda (")
    assert "convert the disk to qcow2 to enable them" in message
    assert ops(vm) == []
    volume = Volume.objects.get(name=f"{vm.name}.raw")
    body = page(alice).get(f"/vms/{vm.uuid}/").content.decode()
    assert "Convert to qcow2 to enable snapshots" in body
    assert f'href="/storage/volumes/{volume.pk}/"' in body


def test_internal_and_external_snapshots_are_not_mixed(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    take(vm, alice, "inner")
    assert "has internal snapshots (inner)" in refused(vm, "snapshot-create", name="outer", disk_only="on")
    Snapshot.objects.filter(vm=vm).delete()
    external_row(vm, "outer")
    assert "merge it first" in refused(vm, "snapshot-create", name="inner2")
    assert "external (disk-only) snapshot" in refused(vm, "snapshot-revert", snapshot="outer")


def test_deleting_what_overlays_depend_on_is_refused(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice, running=True)
    external_row(vm, "base")
    external_row(vm, "top", parent="base")
    assert refused(vm, "snapshot-delete", snapshot="base") == "Cannot delete base: the overlays of top depend on it."
    assert "Merge it instead" in refused(vm, "snapshot-delete", snapshot="top")
    assert "top is an external snapshot" in refused(vm, "snapshot-delete", snapshot="base", children="with")
    assert refused(vm, "snapshot-commit", snapshot="base") == (
        "Cannot merge base: merge the newest external snapshot first."
    )
    assert ops(vm) == []
    vm_action(actor=actor_of(alice), vm=fresh(vm), action="snapshot-commit", params={"snapshot": "top"})
    assert ops(vm) == ["vm.snapshot-commit"]


def test_merging_needs_the_vm_running(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    external_row(vm, "top")
    assert refused(vm, "snapshot-commit", snapshot="top") == (
        f"Cannot merge the snapshot: {vm.name} is shut off. Start it first: an overlay is merged while the VM runs."
    )


def test_snapshot_actions_are_in_the_vm_action_table() -> None:
    names = [name for name, spec in ACTIONS.items() if spec.group == "snapshots"]
    assert names == ["snapshot-create", "snapshot-revert", "snapshot-delete", "snapshot-commit", "snapshot-refresh"]
    assert all(ACTIONS[name].check is not None for name in names)


# -- API --------------------------------------------------------------------------------------------


def test_api_lists_the_tree_for_the_owner(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    take(vm, alice, "a", description="first")
    take(vm, alice, "b")
    response = api(alice).get(f"/api/v1/vms/{vm.uuid}/snapshots/")
    assert response.status_code == 200
    body = response.json()
    for snap in body["snapshots"]:
        assert snap.pop("created")
    assert body == {
        "snapshots": [
            {
                "name": "a",
                "parent": "",
                "description": "first",
                "state": "shutoff",
                "current": False,
                "has_memory": False,
                "kind": "internal",
                "depth": 0,
                "disks": [{"target_dev": "vda", "kind": "internal", "path": None}],
            },
            {
                "name": "b",
                "parent": "a",
                "description": "",
                "state": "shutoff",
                "current": True,
                "has_memory": False,
                "kind": "internal",
                "depth": 1,
                "disks": [{"target_dev": "vda", "kind": "internal", "path": None}],
            },
        ],
        "internal_refusal": "",
        "external_refusal": f"{vm.name} has internal snapshots (a, b). After an external overlay goes on top, "
        "libvirt could no longer revert to them: delete them first, or take another internal snapshot.",
    }
    item = api(alice).get(f"/api/v1/vms/{vm.uuid}/snapshots/b/")
    assert item.status_code == 200 and item.json()["parent"] == "a"
    assert api(alice).get(f"/api/v1/vms/{vm.uuid}/snapshots/zz/").status_code == 404


def test_api_reads_the_stored_rows_and_never_the_host(lab, alice, no_libvirt):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    virt_snapshots.create_snapshot(TARGET, str(vm.uuid), SnapshotSpec(name="outside"))
    with no_libvirt():
        for query in ("", "?fresh=1"):
            assert api(alice).get(f"/api/v1/vms/{vm.uuid}/snapshots/{query}").json()["snapshots"] == []
    snapshots_refresh(vm)  # what an event, a reconcile or a host refresh does
    body = api(alice).get(f"/api/v1/vms/{vm.uuid}/snapshots/").json()
    assert [snap["name"] for snap in body["snapshots"]] == ["outside"]


@pytest.mark.django_db(transaction=True)
def test_two_refreshes_of_one_vm_at_once_take_turns(lab, alice, monkeypatch):  # type: ignore[no-untyped-def]
    """A snapshot's pause and resume make the events process re-read the rows while the worker that took
    it does: neither may fail on the other's rows."""
    vm = make_guest(lab, alice)
    virt_snapshots.create_snapshot(TARGET, str(vm.uuid), SnapshotSpec(name="both"))
    listing, rows_at_read, both_read = virt_snapshots.list_snapshots, [], threading.Event()

    def listing_once_the_other_came(target: virt.HostTarget, uuid: str) -> Any:
        """The first reader goes on once the second reads too (they raced) or waits on a lock (turns)."""
        rows_at_read.append(Snapshot.objects.filter(vm_id=vm.pk).count())
        if len(rows_at_read) == 2:
            both_read.set()
        else:
            wait_until(lambda: both_read.is_set() or a_query_waits_on_a_lock(), timeout=20, what="the other refresh")
        return listing(target, uuid)

    monkeypatch.setattr(virt_snapshots, "list_snapshots", listing_once_the_other_came)
    errors: list[Exception] = []

    def refresh() -> None:
        try:
            snapshots_refresh(fresh(vm))
        except Exception as exc:  # the test reports whatever a refresh raised
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert rows_at_read == [0, 1]  # the second read came once the first refresh had stored its rows
    assert tree(vm) == [("both", 0, True)]


@pytest.mark.parametrize("who", ["alice", "ada"])
def test_api_owner_or_admin_gets_202(lab, alice, ada, queued, who):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    user = {"alice": alice, "ada": ada}[who]
    created = api(user).post(f"/api/v1/vms/{vm.uuid}/snapshots/", {"name": "s1"}, content_type="application/json")
    assert created.status_code == 202
    assert created.json()["operation"]["kind"] == "vm.snapshot-create"
    run_last(queued)
    for action, kind in (("revert", "vm.snapshot-revert"), ("delete", "vm.snapshot-delete")):
        response = api(user).post(f"/api/v1/vms/{vm.uuid}/snapshots/s1/actions/{action}/")
        assert response.status_code == 202, response.json()
        assert response.json()["operation"]["kind"] == kind
        run_last(queued)
    assert tree(vm) == []
    assert api(user).post(f"/api/v1/vms/{vm.uuid}/snapshots/s1/actions/explode/").status_code == 400


def run_last(queued: list[int]) -> None:
    op = run(Operation.objects.latest("pk"))
    assert op.status == "succeeded", op.error


def ops(vm: VirtualMachine) -> list[str]:
    return list(Operation.objects.filter(target_id=str(vm.uuid)).order_by("pk").values_list("kind", flat=True))


def test_api_other_user_gets_404_and_anonymous_401(lab, alice, bob, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    take(vm, alice, "s1")
    urls = [
        ("get", f"/api/v1/vms/{vm.uuid}/snapshots/"),
        ("post", f"/api/v1/vms/{vm.uuid}/snapshots/"),
        ("get", f"/api/v1/vms/{vm.uuid}/snapshots/s1/"),
        ("post", f"/api/v1/vms/{vm.uuid}/snapshots/s1/actions/revert/"),
        ("post", f"/api/v1/vms/{vm.uuid}/snapshots/s1/actions/delete/"),
    ]
    for method, url in urls:
        other = getattr(api(bob), method)(url, {"name": "x"}, content_type="application/json")
        assert other.status_code == 404, url
        anonymous = getattr(api(None), method)(url, {"name": "x"}, content_type="application/json")
        assert anonymous.status_code == 401, url
    assert ops(vm) == ["vm.snapshot-create"]
    assert [row.name for row in Snapshot.objects.filter(vm=vm)] == ["s1"]


def test_api_refusal_is_409_with_the_reason(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice, fmt="raw")
    response = api(alice).post(f"/api/v1/vms/{vm.uuid}/snapshots/", {"name": "x"}, content_type="application/json")
    assert response.status_code == 409
    assert response.json()["error"]["message"].startswith("Cannot take an internal snapshot:")


# -- pages ------------------------------------------------------------------------------------------


def test_vm_page_shows_the_snapshot_tab_from_the_database(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice, running=True)
    take(vm, alice, "with-ram")
    body = page(alice).get(f"/vms/{vm.uuid}/").content.decode()
    assert 'id="tab-snapshots"' in body
    assert 'data-snapshot="with-ram" aria-current="true"' in body
    assert "with memory" in body
    assert f"Revert {vm.name} to snapshot with-ram? It comes back running" in body
    assert f'action="/vms/{vm.uuid}/actions/snapshot-create/"' in body


def test_page_shows_the_overlay_chain_and_merge_for_external(lab, alice):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    external_row(vm, "ext")
    body = page(alice).get(f"/vms/{vm.uuid}/").content.decode()
    assert f"<code>/pool/{vm.name}.ext.qcow2</code>" in body
    assert "Merge the overlays of ext" in body


def test_page_actions_owner_other_and_anonymous(lab, alice, bob, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    url = f"/vms/{vm.uuid}/actions/snapshot-create/"
    assert page(bob).get(f"/vms/{vm.uuid}/").status_code == 404
    assert page(None).get(f"/vms/{vm.uuid}/").status_code == 302
    assert page(bob).post(url, {"name": "x"}).status_code == 404
    anonymous = page(None).post(url, {"name": "x"})
    assert anonymous.status_code == 302 and "/login" in anonymous["Location"]
    assert ops(vm) == []
    owner = page(alice).post(url, {"name": "x", "memory": "on", "next": f"/vms/{vm.uuid}/#snapshots"})
    assert owner.status_code == 302
    assert ops(vm) == ["vm.snapshot-create"]
    run_last(queued)
    assert tree(vm) == [("x", 0, True)]
    snapshots_refresh(fresh(vm))
    assert tree(vm) == [("x", 0, True)]
