"""Live storage pages on libvirt's test driver: pool.state pushed on commit when a pool's rows change (and to
whom), the saved-state (managed save) lists of the storage pages, and snapshots made outside kvmweb read by the
host refresh and by the events process.

alice is a member of the host and owns the VMs she is given, bob sees nothing, ada administers.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from hosts.watcher.apply import domain_apply
from kvmweb import virt
from kvmweb.asgi import application
from kvmweb.operations.models import Operation
from kvmweb.realtime import publish as publish_module
from kvmweb.virt import snapshots as virt_snapshots
from kvmweb.virt import volumes as virt_volumes
from kvmweb.virt.xml import DomainSpec, SnapshotSpec, VolumeSpec, build_domain_xml
from storage import selectors
from storage.messages import pools_publish
from storage.models import StoragePool, Volume
from storage.services import storage_apply_inventory, volume_forget
from storage.volumes import refresh_host_storage
from tests.factories import PASSWORD, make_host, make_vm
from tests.runs import actor_of, run
from tests.unit.test_vm_snapshots import _clean_test_driver  # noqa: F401 (autouse: domains and volumes made here go)
from vms.models import VirtualMachine
from vms.snapshot_models import Snapshot
from vms.snapshots import snapshots_sync

TEST_URI = "test:///default"
TARGET = virt.HostTarget(TEST_URI)
POOL = "default-pool"
MIB = 1024**2


@pytest.fixture
def lab(alice):  # type: ignore[no-untyped-def]
    host = make_host("testhost", uri=TEST_URI, members=(alice,))
    host_reconcile(host=host, inventory=virt.get_inventory(TARGET))
    return host


@pytest.fixture
def sent(monkeypatch):  # type: ignore[no-untyped-def]
    """What reaches Channels, as (groups, payload), once a transaction commits (`committed` below)."""
    out: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(publish_module, "_send", lambda groups, payload, *_: out.append((groups, payload)))
    return out


@pytest.fixture
def committed(django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    """`with committed():` runs the on-commit callbacks at its end, as a commit would (tests never commit)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def pool_messages(sent: list[tuple[list[str], dict[str, Any]]]) -> list[tuple[list[str], dict[str, Any]]]:
    return [(groups, payload) for groups, payload in sent if payload["type"] == "pool.state"]


def expected(pool: StoragePool) -> dict[str, Any]:
    pool.refresh_from_db()
    return {
        "type": "pool.state",
        "v": 1,
        "pool": {
            "id": pool.pk,
            "host": pool.host_id,
            "uuid": str(pool.uuid),
            "name": POOL,
            "state": "running",
            "autostart": pool.autostart,
            "persistent": pool.persistent,
            "capacity": pool.capacity,
            "allocation": pool.allocation,
            "available": pool.available,
            "gone": False,
        },
    }


# --- pool.state on commit -------------------------------------------------------------------------------------------


def test_a_new_volume_pushes_its_pool_once_the_refresh_commits(lab, monkeypatch, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    sent: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(publish_module, "_send", lambda groups, payload, *_: sent.append((groups, payload)))
    pool = StoragePool.objects.get(host=lab, name=POOL)
    virt_volumes.create_volume(TARGET, POOL, VolumeSpec(name="live.qcow2", capacity_bytes=16 * MIB))
    with django_capture_on_commit_callbacks() as callbacks:
        refresh_host_storage(lab, pool)
    assert sent == []  # nothing before commit
    for callback in callbacks:
        callback()
    assert pool_messages(sent) == [(["admins", f"host.{lab.pk}"], expected(pool))]
    assert Volume.objects.filter(pool=pool, name="live.qcow2").exists()


def test_a_refresh_that_changes_nothing_pushes_nothing(lab, sent, committed):  # type: ignore[no-untyped-def]
    with committed():
        refresh_host_storage(lab)
    assert pool_messages(sent) == []


def test_a_volume_whose_size_changed_on_the_host_pushes_its_pool(lab, sent, committed):  # type: ignore[no-untyped-def]
    # The test driver cannot resize; the row is made to lag behind the host instead, as after a resize.
    pool = StoragePool.objects.get(host=lab, name=POOL)
    virt_volumes.create_volume(TARGET, POOL, VolumeSpec(name="grow.qcow2", capacity_bytes=16 * MIB))
    refresh_host_storage(lab, pool)
    Volume.objects.filter(pool=pool, name="grow.qcow2").update(capacity=8 * MIB)
    with committed():
        refresh_host_storage(lab, pool)
    assert pool_messages(sent) == [(["admins", f"host.{lab.pk}"], expected(pool))]
    assert Volume.objects.get(pool=pool, name="grow.qcow2").capacity == 16 * MIB


def test_a_deleted_volume_pushes_its_pool_even_when_the_space_did_not_move(lab, sent, committed):  # type: ignore[no-untyped-def]
    pool = StoragePool.objects.get(host=lab, name=POOL)
    record = virt_volumes.create_volume(TARGET, POOL, VolumeSpec(name="gone.qcow2", capacity_bytes=16 * MIB))
    refresh_host_storage(lab, pool)
    volume = Volume.objects.get(pool=pool, name="gone.qcow2")
    virt_volumes.delete_volume(TARGET, record.path or "")
    with committed():
        volume_forget(volume)
    assert not Volume.objects.filter(pk=volume.pk).exists()
    assert pool_messages(sent) == [(["admins", f"host.{lab.pk}"], expected(pool))]


def test_the_last_volume_of_an_active_pool_leaves_its_rows_when_it_goes(lab, sent, committed):  # type: ignore[no-untyped-def]
    pool = StoragePool.objects.get(host=lab, name=POOL)
    virt_volumes.create_volume(TARGET, POOL, VolumeSpec(name="last.qcow2", capacity_bytes=16 * MIB))
    refresh_host_storage(lab, pool)
    record = virt.PoolRecord(
        uuid=str(pool.uuid), name=pool.name, type=pool.type, state="running", autostart=pool.autostart,
        persistent=pool.persistent, capacity=pool.capacity, allocation=pool.allocation, available=pool.available,
        target_path=pool.target_path, xml=pool.xml,
    )  # fmt: skip
    assert pool.volumes.exists()
    with committed():
        storage_apply_inventory(host=lab, pools=[record], volumes=[], now=pool.updated)
    assert not pool.volumes.exists()  # an active pool listing nothing has no volumes
    assert [payload["pool"]["id"] for _groups, payload in pool_messages(sent)] == [pool.pk]


def test_a_volume_created_through_the_api_pushes_its_pool(lab, ada, sent, committed, queued):  # type: ignore[no-untyped-def]
    pool = StoragePool.objects.get(host=lab, name=POOL)
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=ada)[0].key}")
    body = {"pool": pool.pk, "name": "api.qcow2", "size": 16, "unit": "MiB", "format": "qcow2"}
    response = client.post("/api/v1/volumes/", body, content_type="application/json")
    assert response.status_code == 202, response.content
    with committed():
        op = run(Operation.objects.get(pk=response.json()["operation"]["id"]))
    assert op.status == "succeeded", op.error
    assert pool_messages(sent) == [(["admins", f"host.{lab.pk}"], expected(pool))]


# --- who gets it --------------------------------------------------------------------------------------------------


async def _socket(user: Any) -> WebsocketCommunicator:
    token = await database_sync_to_async(lambda: Token.objects.get_or_create(user=user)[0].key)()
    ws = WebsocketCommunicator(application, f"/ws/events/?token={token}", headers=[(b"origin", b"http://localhost")])
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from())["type"] == "hello"
    return ws


@pytest.mark.django_db(transaction=True)
async def test_pool_state_reaches_members_and_admins_of_the_host_only(alice, bob, ada):  # type: ignore[no-untyped-def]
    host = await database_sync_to_async(make_host)("lab", members=(alice,))
    pool = await database_sync_to_async(StoragePool.objects.create)(
        host=host, uuid=uuid.uuid4(), name="p", state="running"
    )
    sockets = {name: await _socket(user) for name, user in (("alice", alice), ("bob", bob), ("ada", ada))}
    await database_sync_to_async(pools_publish)([pool])
    for name in ("alice", "ada"):
        message = await sockets[name].receive_json_from(timeout=2)
        assert (message["type"], message["v"], message["pool"]["id"]) == ("pool.state", 1, pool.pk)
    assert await sockets["bob"].receive_nothing(timeout=0.3)
    for ws in sockets.values():
        await ws.disconnect()


# --- saved states (managed save) ------------------------------------------------------------------------------------


@pytest.fixture
def saved(host, alice):  # type: ignore[no-untyped-def]
    """alice's VM with a saved state, ada's other one, and one without."""
    other = make_host("far")
    mine = make_vm(host, "web", owner=alice, state="shutoff", state_reason="saved", has_managed_save=True)
    theirs = make_vm(other, "db", state="shutoff", state_reason="saved", has_managed_save=True)
    make_vm(host, "plain", owner=alice, state="shutoff")
    make_vm(host, "ghost", owner=alice, state="gone", has_managed_save=True)
    return mine, theirs


def test_saved_states_are_the_vms_the_user_sees_with_a_saved_image(saved, alice, bob, ada):  # type: ignore[no-untyped-def]
    mine, theirs = saved
    assert [row.vm for row in selectors.saved_states(ada)] == [theirs, mine]  # by host name, then VM name
    assert [row.vm for row in selectors.saved_states(ada, host_id=mine.host_id)] == [mine]
    assert [row.vm for row in selectors.saved_states(alice)] == [mine]
    assert selectors.saved_states(bob) == []
    row = selectors.saved_states(alice)[0]
    assert row.saved_at == mine.state_changed
    assert row.discard is not None and row.discard.name == "discard-save"
    assert row.discard.confirm.startswith("Discard the saved state of web?")


def test_a_saved_state_on_an_unreachable_host_says_why_it_cannot_be_discarded(saved, ada):  # type: ignore[no-untyped-def]
    mine, _theirs = saved
    mine.host.state = "unreachable"
    mine.host.save()
    row = selectors.saved_states(ada, host_id=mine.host_id)[0]
    assert row.discard is None
    assert "unreachable" in row.refusal


def test_the_storage_list_and_the_host_tab_list_saved_states_with_a_discard_button(saved, alice):  # type: ignore[no-untyped-def]
    mine, _theirs = saved
    client = Client()
    client.login(username="alice", password=PASSWORD)
    action = f"/vms/{mine.uuid}/actions/discard-save/"
    for url in ("/storage/", f"/storage/?host={mine.host_id}", f"/hosts/{mine.host_id}/"):
        page = client.get(url).content.decode()
        assert f'data-saved-vm="{mine.uuid}"' in page, url
        assert f'action="{action}"' in page
        assert "Discard the saved state of web?" in page
        assert "db" not in [row.vm.name for row in selectors.saved_states(alice)]


def test_the_storage_pages_say_plainly_when_nothing_is_saved(host, alice):  # type: ignore[no-untyped-def]
    client = Client()
    client.login(username="alice", password=PASSWORD)
    assert "No saved VM states." in client.get("/storage/").content.decode()
    assert "No saved VM states on this host." in client.get(f"/hosts/{host.pk}/").content.decode()


def test_discarding_from_the_storage_page_queues_the_vms_discard_action(saved, alice, queued):  # type: ignore[no-untyped-def]
    mine, _theirs = saved
    client = Client()
    client.login(username="alice", password=PASSWORD)
    response = client.post(f"/vms/{mine.uuid}/actions/discard-save/", {"confirm": "yes", "next": "/storage/"})
    assert response.status_code == 302 and response["Location"] == "/storage/"
    op = Operation.objects.get(target_type="vm", target_id=str(mine.uuid))
    assert (op.kind, op.requested_by) == ("vm.discard-save", alice)


# --- snapshots made outside kvmweb ------------------------------------------------------------------------------------


def guest(host: Any) -> VirtualMachine:
    spec = DomainSpec(name=f"s-{uuid.uuid4().hex[:8]}", uuid=str(uuid.uuid4()), memory_mib=128, vcpus=1)
    summary = virt.define_domain(TARGET, build_domain_xml(spec))
    host_reconcile(host=host, inventory=virt.get_inventory(TARGET))
    return VirtualMachine.objects.get(uuid=summary.uuid)


def test_the_host_refresh_reads_snapshots_taken_outside_kvmweb(lab, ada, queued):  # type: ignore[no-untyped-def]
    vm = guest(lab)
    virt_snapshots.create_snapshot(TARGET, str(vm.uuid), SnapshotSpec(name="by-virsh"))
    assert not Snapshot.objects.filter(vm=vm).exists()
    from hosts.services import host_refresh

    op = run(host_refresh(actor=actor_of(ada), host=lab))
    assert op.status == "succeeded", op.error
    assert op.result["snapshots_reread"] >= 1
    assert [(s.name, s.is_current) for s in Snapshot.objects.filter(vm=vm)] == [("by-virsh", True)]


def test_snapshots_are_listed_again_only_when_their_names_or_current_one_changed(lab, monkeypatch):  # type: ignore[no-untyped-def]
    vm = guest(lab)
    virt_snapshots.create_snapshot(TARGET, str(vm.uuid), SnapshotSpec(name="one"))
    assert snapshots_sync(lab, [vm]) == [vm]
    listed: list[str] = []
    real = virt_snapshots.list_snapshots

    def counted(target: virt.HostTarget, vm_uuid: str) -> tuple[virt_snapshots.SnapshotRecord, ...]:
        listed.append(vm_uuid)
        return real(target, vm_uuid)

    monkeypatch.setattr(virt_snapshots, "list_snapshots", counted)
    assert snapshots_sync(lab, [vm]) == []  # unchanged: the names and the current one were enough
    assert listed == []
    virt_snapshots.create_snapshot(TARGET, str(vm.uuid), SnapshotSpec(name="two"))
    virt_snapshots.revert_snapshot(TARGET, str(vm.uuid), "one")
    assert snapshots_sync(lab, [vm]) == [vm]
    assert listed == [str(vm.uuid)]
    current = Snapshot.objects.get(vm=vm, is_current=True)
    assert (current.name, sorted(Snapshot.objects.filter(vm=vm).values_list("name", flat=True))) == (
        "one",
        ["one", "two"],
    )


def test_a_domain_event_that_changed_the_vm_rereads_its_snapshots(lab):  # type: ignore[no-untyped-def]
    vm = guest(lab)
    virt_snapshots.create_snapshot(TARGET, str(vm.uuid), SnapshotSpec(name="outside"))
    virt.start_domain(TARGET, str(vm.uuid))
    out = domain_apply(lab, str(vm.uuid), virt.get_domain_record(TARGET, str(vm.uuid)))
    assert out is not None and out.message["state"] == "running"
    assert list(Snapshot.objects.filter(vm=vm).values_list("name", flat=True)) == ["outside"]


def test_a_vm_gone_from_its_host_is_skipped_quietly(lab):  # type: ignore[no-untyped-def]
    vm = guest(lab)
    virt.undefine_domain(TARGET, str(vm.uuid))
    assert snapshots_sync(lab, [vm]) == []
