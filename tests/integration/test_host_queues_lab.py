"""A host with a worker queue: its operations go through real Redis to a real worker that consumes only
that queue (as one running on the host would), never to the central "default"."""

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from hosts.models import Host
from kvmweb import virt
from kvmweb.audit.models import AuditEvent
from kvmweb.operations.models import Operation
from tests.factories import make_user
from tests.nodefiles import Guest, write_node
from tests.stack import process_env, running, wait_until
from vms.models import VirtualMachine

pytestmark = pytest.mark.integration

QUEUE = "host.lab-own-worker"


@pytest.fixture(scope="module")
def host_worker(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A Celery worker on the test database and the real Redis that consumes QUEUE and nothing else."""
    log: Path = tmp_path_factory.mktemp("host-worker") / "worker.log"
    with django_db_blocker.unblock():
        env = process_env()
    args = ["celery", "-A", "kvmweb", "worker", "-Q", QUEUE, "--pool", "solo", "-l", "info"]
    with running(args, env=env, log=log, ready=lambda: "ready." in log.read_text(), what="the host's worker"):
        yield log


def test_adding_a_host_with_a_queue_runs_its_first_contact_on_that_queues_worker(
    host_worker, transactional_db, libvirt_host
):  # type: ignore[no-untyped-def]
    ada = make_user("ada", admin=True)
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    body = {"name": "lab", "uri": libvirt_host, "queue": QUEUE}
    response = api.post("/api/v1/hosts/", body, content_type="application/json")
    assert response.status_code == 201, response.content
    op_id = response.json()["operation"]["id"]
    wait_until(
        lambda: Operation.objects.get(pk=op_id).status in ("succeeded", "failed"),
        timeout=60,
        what="the host's first contact",
        log=host_worker,
    )
    op = Operation.objects.get(pk=op_id)
    assert (op.kind, op.status, op.queue) == ("host.add", "succeeded", QUEUE), op.error
    assert Host.objects.get(name="lab").state == "connected"
    assert "Task operations.run[" in host_worker.read_text()


def test_a_bulk_start_reaches_the_worker_as_one_batch_and_each_vm_gets_its_outcome(
    host_worker, transactional_db, tmp_path
):  # type: ignore[no-untyped-def]
    """A simulated host (a node file the worker opens too): its four VMs start in one task, and each
    operation still ends on its own, with its audit event."""
    guests = [Guest(f"batch-{n}", str(uuid.uuid4()), state="shutoff") for n in range(4)]
    uri = write_node(tmp_path / "node.xml", guests)
    host = Host.objects.create(name="batch", uri=uri, state=Host.State.CONNECTED, queue=QUEUE)
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
    ada = make_user("ada", admin=True)
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    body = {"vms": [guest.uuid for guest in guests]}
    response = api.post("/api/v1/vms/actions/start/", body, content_type="application/json")
    assert response.status_code == 202, response.content
    ids = [op["id"] for op in response.json()["operations"]]
    wait_until(
        lambda: not Operation.objects.filter(pk__in=ids, status__in=Operation.ACTIVE).exists(),
        timeout=60,
        what="the bulk start",
        log=host_worker,
    )
    ops = Operation.objects.filter(pk__in=ids)
    assert [(op.status, op.result.get("state")) for op in ops] == [("succeeded", "running")] * 4
    assert AuditEvent.objects.filter(operation__in=ids, outcome="succeeded").count() == 4
    assert set(VirtualMachine.objects.filter(host=host).values_list("state", flat=True)) == {"running"}
    assert len(re.findall(r"Task operations\.run_batch\[\S+\] received", host_worker.read_text())) == 1
