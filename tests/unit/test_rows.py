"""Writing the same columns of many rows at once (`kvmweb.rows`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from kvmweb.rows import rows_update
from tests.factories import make_host, make_vm
from vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows():  # type: ignore[no-untyped-def]
    host = make_host(name="rows-host")
    return [make_vm(host, name=f"rows-{n}") for n in range(3)]


def test_many_rows_go_in_one_statement_with_their_own_values(rows):  # type: ignore[no-untyped-def]
    when = timezone.now() - timedelta(days=1)
    for n, vm in enumerate(rows):
        vm.state, vm.vcpus, vm.pending, vm.state_changed = "running", n + 1, {"memory_kib": n}, when
    before = {vm.pk: vm.updated for vm in rows}
    with CaptureQueriesContext(connection) as queries:
        written = rows_update(rows, ["state", "vcpus", "pending", "state_changed", "updated"])
    assert written == {vm.pk for vm in rows}
    assert len(queries) == (1 if connection.vendor == "postgresql" else 3)
    stored = {vm.pk: vm for vm in VirtualMachine.objects.filter(pk__in=written)}
    for n, vm in enumerate(rows):
        row = stored[vm.pk]
        assert (row.state, row.vcpus, row.pending, row.state_changed) == ("running", n + 1, {"memory_kib": n}, when)
        assert row.updated > before[vm.pk]  # auto_now, as a save would


def test_only_the_named_columns_are_written(rows):  # type: ignore[no-untyped-def]
    rows[0].name, rows[1].name = "renamed-0", "renamed-1"
    rows[0].vcpus = rows[1].vcpus = 7
    rows_update(rows[:2], ["vcpus"])
    stored = VirtualMachine.objects.filter(pk__in=[rows[0].pk, rows[1].pk]).values_list("name", "vcpus")
    assert sorted(stored) == [("rows-0", 7), ("rows-1", 7)]


def test_a_guard_skips_the_rows_whose_column_moved_on(rows):  # type: ignore[no-untyped-def]
    VirtualMachine.objects.filter(pk=rows[1].pk).update(state="gone")
    for vm in rows:
        vm.vcpus = 9
    assert rows_update(rows, ["vcpus"], guard=("state", "running")) == {rows[0].pk, rows[2].pk}
    assert VirtualMachine.objects.get(pk=rows[1].pk).vcpus != 9
    assert rows_update(rows[1:2], ["vcpus"], guard=("state", "running")) == set()  # one row: a plain UPDATE


def test_nothing_to_write_sends_nothing(django_assert_num_queries):  # type: ignore[no-untyped-def]
    with django_assert_num_queries(0):
        assert rows_update([], ["vcpus"]) == set()


def test_a_guard_can_hold_a_value_for_each_row(rows):  # type: ignore[no-untyped-def]
    VirtualMachine.objects.filter(pk=rows[0].pk).update(version=5)
    for vm in rows:
        vm.vcpus = 4
    with CaptureQueriesContext(connection) as queries:
        written = rows_update(rows, ["vcpus"], guard=("version", [4, rows[1].version, rows[2].version]))
    assert written == {rows[1].pk, rows[2].pk}
    assert len(queries) == (1 if connection.vendor == "postgresql" else 3)
    assert VirtualMachine.objects.get(pk=rows[0].pk).vcpus != 4
