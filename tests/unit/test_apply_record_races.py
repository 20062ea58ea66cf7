"""A new network or pool has two writers at once: the worker that made it writes its row, and the
events process writes the same row for libvirt's event. The second insert must take the first's row."""

import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from kvmweb import virt
from networks.models import Network
from networks.services import network_apply_record
from storage.models import StoragePool
from storage.services import pool_apply_record
from tests.factories import make_host
from tests.locks import a_query_waits_on_a_lock
from tests.stack import wait_until

TARGET = virt.HostTarget("test:///default")


def _kind(kind: str) -> tuple[Any, Any, Any]:
    inventory = virt.get_inventory(TARGET)
    if kind == "network":
        return inventory.networks[0], Network, network_apply_record
    return inventory.pools[0], StoragePool, pool_apply_record


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["network", "pool"])
def test_an_event_whose_row_another_writer_is_inserting_takes_that_row(kind: str) -> None:
    host = make_host()
    record, model, apply = _kind(kind)
    inserted, release = threading.Event(), threading.Event()
    outcome: list[Any] = []

    def worker() -> None:
        """Inserts the row and holds its transaction open until the event's insert waits on it."""
        try:
            with transaction.atomic():
                apply(host=host, uuid=record.uuid, record=record, now=timezone.now())
                inserted.set()
                release.wait(20)
        finally:
            connection.close()

    def event() -> None:
        try:
            outcome.append(apply(host=host, uuid=record.uuid, record=record, now=timezone.now()))
        except Exception as exc:  # the test reports whatever the event's write raised
            outcome.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=worker)
    first.start()
    assert inserted.wait(20)
    second = threading.Thread(target=event)
    second.start()
    try:
        wait_until(a_query_waits_on_a_lock, timeout=20, what="the event's insert waiting on the worker's")
    finally:
        release.set()
        first.join(30)
        second.join(30)
    assert outcome == [None]  # the worker's row already says what the event saw: nothing to change
    assert model.objects.filter(host=host, uuid=record.uuid).count() == 1
