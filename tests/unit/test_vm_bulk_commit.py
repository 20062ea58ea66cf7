"""A bulk action commits its operations together: workers hear of none before all are recorded."""

import pytest
from rest_framework.test import APIClient

from kvmweb.actors import Actor
from kvmweb.operations import services as operation_services
from kvmweb.operations.models import Operation
from tests.factories import make_host, make_user, make_vm
from vms.actions import vm_bulk_action


@pytest.mark.django_db(transaction=True)
def test_workers_are_told_only_once_every_operation_of_the_batch_is_committed(monkeypatch):
    visible_at_enqueue: list[int] = []
    monkeypatch.setattr(
        operation_services, "_enqueue", lambda op_id, kind, queue: visible_at_enqueue.append(Operation.objects.count())
    )
    ada = make_user("ada", admin=True)
    host = make_host("lab")
    vms = [make_vm(host, f"vm{i}", state="shutoff") for i in range(5)]

    result = vm_bulk_action(actor=Actor(user=ada, ip=None), vms=vms, action="start")

    assert len(result.operations) == 5 and not result.refused
    assert visible_at_enqueue == [5] * 5


@pytest.mark.parametrize("admin", [True, False])
def test_a_bulk_request_costs_the_same_few_queries_per_vm_whoever_asks(
    admin, db, queued, django_assert_max_num_queries
):  # type: ignore[no-untyped-def]
    """Per VM: a savepoint, the operation, its audit event, the release. Neither the requester (named in
    the response) nor, for an administrator, the VM's visibility is looked up again for each one."""
    user = make_user("ada", admin=admin)
    host = make_host("lab")
    host.members.add(user)
    vms = [make_vm(host, f"vm{i}", state="shutoff", owner=user) for i in range(20)]
    client = APIClient()
    client.force_authenticate(user)
    per_vm = 4 if admin else 5  # a user's visibility of each VM is one query
    with django_assert_max_num_queries(12 + per_vm * len(vms)):
        response = client.post("/api/v1/vms/actions/start/", {"vms": [str(vm.uuid) for vm in vms]}, format="json")
    assert response.status_code == 202 and len(response.json()["operations"]) == 20
    assert {op["requested_by"] for op in response.json()["operations"]} == {"ada"}


@pytest.mark.django_db(transaction=True)
def test_a_bulk_request_commits_its_operations_without_a_savepoint(monkeypatch):  # type: ignore[no-untyped-def]
    """Savepoints are round trips made while the operations wait for their commit."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    monkeypatch.setattr(operation_services, "_enqueue", lambda op_id, kind, queue: None)
    ada = make_user("ada", admin=True)
    host = make_host("lab")
    vms = [make_vm(host, f"vm{i}", state="shutoff") for i in range(3)]
    with CaptureQueriesContext(connection) as queries:
        result = vm_bulk_action(actor=Actor(user=ada, ip=None), vms=vms, action="start")
    assert len(result.operations) == 3
    assert not [q["sql"] for q in queries if "SAVEPOINT" in q["sql"]]


@pytest.fixture
def handed_over(monkeypatch):  # type: ignore[no-untyped-def]
    """In order: "send N" when N task messages go to the broker, "push" for each operation pushed to browsers."""
    events: list[str] = []
    monkeypatch.setattr(operation_services, "_send", lambda messages: events.append(f"send {len(messages)}"))
    monkeypatch.setattr(operation_services, "operation_publish", lambda op, hold=0.0: events.append("push"))
    return events


@pytest.mark.django_db(transaction=True)
def test_workers_get_their_messages_before_browsers_get_the_pending_pushes(handed_over):  # type: ignore[no-untyped-def]
    """Building a bulk request's pending pushes took the API milliseconds the workers waited through."""
    host = make_host("lab")
    vms = [make_vm(host, f"vm{i}", state="shutoff") for i in range(3)]
    vm_bulk_action(actor=Actor(user=make_user("ada", admin=True), ip=None), vms=vms, action="start")
    assert handed_over == ["send 3", "push", "push", "push"]


@pytest.mark.django_db(transaction=True)
def test_a_single_operation_is_sent_then_pushed_at_its_commit(handed_over):  # type: ignore[no-untyped-def]
    from vms.actions import vm_action

    vm = make_vm(make_host("lab"), "vm0", state="shutoff")
    vm_action(actor=Actor(user=make_user("ada", admin=True), ip=None), vm=vm, action="start")
    assert handed_over == ["send 1", "push"]
