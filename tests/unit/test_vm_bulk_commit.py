"""A bulk action commits its operations together: workers hear of none before all are recorded."""

import pytest

from kvmweb.actors import Actor
from kvmweb.operations import services as operation_services
from kvmweb.operations.models import Operation
from tests.factories import make_host, make_user, make_vm
from vms.actions import vm_bulk_action


@pytest.mark.django_db(transaction=True)
def test_workers_are_told_only_once_every_operation_of_the_batch_is_committed(monkeypatch):
    visible_at_enqueue: list[int] = []
    monkeypatch.setattr(
        operation_services, "_enqueue", lambda op_id, queue: visible_at_enqueue.append(Operation.objects.count())
    )
    ada = make_user("ada", admin=True)
    host = make_host("lab")
    vms = [make_vm(host, f"vm{i}", state="shutoff") for i in range(5)]

    result = vm_bulk_action(actor=Actor(user=ada, ip=None), vms=vms, action="start")

    assert len(result.operations) == 5 and not result.refused
    assert visible_at_enqueue == [5] * 5
