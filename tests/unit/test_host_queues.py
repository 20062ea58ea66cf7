"""Per-host worker queues: a host may name the Celery queue of a worker running on it, and every operation
about the host or its VMs, networks, pools and volumes goes there; without one, to the central "default".

ada administers; the test driver stands in for the host kvm1.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from hosts.models import Host
from hosts.services import host_refresh
from hosts.tasks import reconcile_all_hosts
from kvmweb import virt
from kvmweb.operations import services as operation_services
from kvmweb.operations.models import Operation
from networks.actions import network_action
from networks.models import Network
from storage import uploads
from storage.models import StoragePool, Volume
from storage.pools import pool_action
from storage.volumes import volume_action
from tests.factories import PASSWORD, make_host, make_vm
from tests.runs import actor_of
from vms.actions import vm_action, vm_bulk_action
from vms.create import vm_create
from vms.selectors import vms_get_many

TEST_URI = "test:///default"
QUEUE = "host.kvm1"
MIB = 1024**2
CAPS = {"virt_types": ["qemu"], "arch": "x86_64", "cpus": 8, "memory_kib": 16 * 1024 * 1024, "free_memory_kib": 4 << 20}


@pytest.fixture
def enqueued(monkeypatch):  # type: ignore[no-untyped-def]
    """{operation id: queue} for each operation that would go to the broker."""
    sent: dict[int, str] = {}
    monkeypatch.setattr(operation_services, "_enqueue", lambda op_id, kind, queue: sent.__setitem__(op_id, queue))
    return sent


@pytest.fixture(params=[QUEUE, ""], ids=["own-worker", "central"])
def kvm1(request, ada):  # type: ignore[no-untyped-def]
    host = make_host("kvm1", uri=TEST_URI, queue=request.param, capabilities=CAPS)
    host_reconcile(host=host, inventory=virt.get_inventory(virt.HostTarget(TEST_URI)))
    return host


@pytest.fixture
def started(enqueued, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    """Run `start` (which queues operations) and commit: [(queue recorded, queue sent to)] per operation."""

    def check(start: Any) -> list[tuple[str, str]]:
        with django_capture_on_commit_callbacks(execute=True):
            made = start()
        ops = made if isinstance(made, list) else [made]
        recorded = dict(Operation.objects.filter(pk__in=[op.pk for op in ops]).values_list("pk", "queue"))
        return [(recorded[op.pk], enqueued[op.pk]) for op in ops]

    return check


def routed(host: Host, count: int = 1) -> list[tuple[str, str]]:
    expected = QUEUE if host.queue else "default"
    return [(expected, expected)] * count


# --- validation -----------------------------------------------------------------------------------------------


def admin_api(ada: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")


@pytest.mark.parametrize("queue", ["", QUEUE, "host.rack-2-node-10", "host." + "a" * 58])
def test_a_host_may_have_no_queue_or_a_host_queue(ada, enqueued, queue):  # type: ignore[no-untyped-def]
    body = {"name": "kvm2", "uri": "qemu:///system", "queue": queue}
    response = admin_api(ada).post("/api/v1/hosts/", body, content_type="application/json")
    assert response.status_code == 201, response.json()
    assert response.json()["host"]["queue"] == queue
    assert Host.objects.get(name="kvm2").task_queue == (queue or "default")


@pytest.mark.parametrize(
    ("queue", "words"),
    [
        ("default", "'default' is a queue of the central workers"),
        ("stats", "'stats' is a queue of the central workers"),
        ("Host.X", "Use host. followed by 1-58 lowercase letters"),
        ("host.", "Use host. followed by 1-58 lowercase letters"),
        ("host." + "a" * 59, "Use host. followed by 1-58 lowercase letters"),
        ("host.kvm_1", "Use host. followed by 1-58 lowercase letters"),
    ],
)
def test_other_queues_are_refused_on_the_queue_field_by_api_and_form(ada, enqueued, queue, words):  # type: ignore[no-untyped-def]
    body = {"name": "kvm2", "uri": "qemu:///system", "queue": queue}
    response = admin_api(ada).post("/api/v1/hosts/", body, content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == ["queue"]
    assert response.json()["error"]["details"]["queue"].startswith(words)
    client = Client()
    assert client.login(username="ada", password=PASSWORD)
    page = client.post("/hosts/add/", {**body, "enabled": "on"})
    assert page.status_code == 400
    errors = page.context["form"].errors
    assert list(errors) == ["queue"] and errors["queue"][0].startswith(words)
    assert not Host.objects.filter(name="kvm2").exists()


def test_changing_the_queue_through_the_api_queues_no_reconnect(ada, enqueued):  # type: ignore[no-untyped-def]
    host = make_host("kvm2", uri="qemu:///system")
    api = admin_api(ada)
    response = api.patch(f"/api/v1/hosts/{host.pk}/", {"queue": QUEUE}, content_type="application/json")
    assert response.status_code == 200 and response.json()["operation"] is None
    assert response.json()["host"]["queue"] == QUEUE
    cleared = api.patch(f"/api/v1/hosts/{host.pk}/", {"queue": ""}, content_type="application/json")
    assert cleared.json()["host"]["queue"] == ""
    host.refresh_from_db()
    assert host.queue == "" and host.task_queue == "default"


# --- routing --------------------------------------------------------------------------------------------------


def test_a_vm_action_goes_to_its_hosts_queue(kvm1, ada, started):  # type: ignore[no-untyped-def]
    vm = make_vm(kvm1, "web", state="shutoff")
    assert started(lambda: vm_action(actor=actor_of(ada), vm=vm, action="start")) == routed(kvm1)


def test_a_bulk_action_sends_each_vm_to_its_hosts_queue_without_reading_hosts_again(kvm1, ada, started):  # type: ignore[no-untyped-def]
    central = make_host("central", uri=TEST_URI)
    made = [make_vm(kvm1, f"vm{i}", state="shutoff") for i in range(3)] + [make_vm(central, "other", state="shutoff")]
    vms, _missing = vms_get_many(ada, [vm.uuid for vm in made])
    with CaptureQueriesContext(connection) as queries:
        sent = started(lambda: vm_bulk_action(actor=actor_of(ada), vms=vms, action="start").operations)
    assert sent == [*routed(kvm1, 3), ("default", "default")]
    assert not [q["sql"] for q in queries if 'FROM "hosts_host"' in q["sql"]]


def test_creating_a_vm_goes_to_the_chosen_hosts_queue(kvm1, ada, started):  # type: ignore[no-untyped-def]
    pool = StoragePool.objects.get(host=kvm1, name="default-pool")
    body = {"name": "new", "host": kvm1.pk, "memory_mib": 256, "source": {"type": "network"}}
    body["disks"] = [{"pool": pool.pk, "size_mib": 64, "format": "qcow2", "allocation": "thin"}]
    assert started(lambda: vm_create(actor=actor_of(ada), data=body)) == routed(kvm1)


def test_a_network_action_goes_to_its_hosts_queue(kvm1, ada, started):  # type: ignore[no-untyped-def]
    network = Network.objects.select_related("host").get(host=kvm1, name="default")
    assert started(lambda: network_action(actor=actor_of(ada), network=network, action="stop")) == routed(kvm1)


def test_a_pool_action_goes_to_its_hosts_queue(kvm1, ada, started):  # type: ignore[no-untyped-def]
    pool = StoragePool.objects.select_related("host").get(host=kvm1, name="default-pool")
    assert started(lambda: pool_action(actor=actor_of(ada), pool=pool, action="refresh")) == routed(kvm1)


def test_a_volume_action_goes_to_its_hosts_queue(kvm1, ada, started):  # type: ignore[no-untyped-def]
    pool = StoragePool.objects.get(host=kvm1, name="default-pool")
    path = f"{pool.target_path}/disk.qcow2"
    Volume.objects.create(pool=pool, name="disk.qcow2", key=path, path=path, format="qcow2", capacity=16 * MIB)
    volume = Volume.objects.select_related("pool__host").get(pool=pool, name="disk.qcow2")
    params = {"size": 32, "unit": "MiB"}
    assert started(lambda: volume_action(actor=actor_of(ada), volume=volume, action="resize", params=params)) == (
        routed(kvm1)
    )


def test_an_upload_goes_to_a_central_worker_which_shares_the_spool(kvm1, ada, started, settings, tmp_path):  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    pool = StoragePool.objects.select_related("host").get(host=kvm1, name="default-pool")
    body = io.BytesIO(b"\0" * MIB)

    def upload() -> Operation:
        return uploads.upload_receive(actor=actor_of(ada), pool=pool, name="f.img", fmt="raw", size=MIB, body=body)

    assert started(upload) == [("default", "default")]


def test_a_host_refresh_goes_to_the_hosts_queue(kvm1, ada, started):  # type: ignore[no-untyped-def]
    assert started(lambda: host_refresh(actor=actor_of(ada), host=kvm1)) == routed(kvm1)


def test_the_periodic_reconcile_sends_each_host_to_its_queue(kvm1, started):  # type: ignore[no-untyped-def]
    make_host("central", uri=TEST_URI)

    def reconcile() -> list[Operation]:
        assert reconcile_all_hosts() == 2
        return list(Operation.objects.filter(kind="host.reconcile").order_by("target_label"))

    assert started(reconcile) == [("default", "default"), *routed(kvm1)]


# --- pages and the migration ----------------------------------------------------------------------------------


def test_the_host_page_and_edit_form_show_the_queue(ada, enqueued):  # type: ignore[no-untyped-def]
    own, central = make_host("kvm1", queue=QUEUE, capabilities=CAPS), make_host("kvm2", capabilities=CAPS)
    client = Client()
    assert client.login(username="ada", password=PASSWORD)
    page = client.get(f"/hosts/{own.pk}/").content.decode()
    assert f'<dt>Worker queue</dt><dd><span class="kv-mono">{QUEUE}</span>' in page
    assert '<dt>Worker queue</dt><dd><span class="kv-muted">none (the central workers)</span>' in (
        client.get(f"/hosts/{central.pk}/").content.decode()
    )
    assert client.get(f"/hosts/{own.pk}/edit/").context["form"]["queue"].value() == QUEUE


def test_a_host_never_reached_names_the_queue_whose_worker_connects_to_it(ada, enqueued):  # type: ignore[no-untyped-def]
    waiting = make_host("kvm1", queue=QUEUE, state=Host.State.UNREACHABLE)
    client = Client()
    assert client.login(username="ada", password=PASSWORD)
    page = client.get(f"/hosts/{waiting.pk}/").content.decode()
    assert f"A worker consuming the queue <code>{QUEUE}</code> connects to it" in page


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_existing_hosts_the_central_queue():  # type: ignore[no-untyped-def]
    before, after = [("hosts", "0003_host_console_address")], [("hosts", "0004_host_queue")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_host = executor.loader.project_state(before).apps.get_model("hosts", "Host")
        old_host.objects.create(name="kvm1", uri="qemu:///system")
        assert "queue" not in {field.name for field in old_host._meta.get_fields()}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(after)
    host = Host.objects.get(name="kvm1")
    assert (host.queue, host.task_queue) == ("", "default")
