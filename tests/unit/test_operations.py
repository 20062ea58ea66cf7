"""Operations: create and queue on commit, claim once, refuse conflicts, record outcomes, reap the stale."""

import contextlib
import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from kvmweb import virt
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.errors import Conflict, Invalid
from kvmweb.operations import services
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.runner import RetryLater, run_claimed, run_claimed_batch
from kvmweb.targets import Target

TARGET = Target("host", "1", "lab")
BEHAVIOUR: dict[str, object] = {}


@operation_kind("test.step", label="Test step", deadline_seconds=60)
def _step(op, progress):  # type: ignore[no-untyped-def]
    progress(50, "Halfway")
    outcome = BEHAVIOUR.get("outcome")
    if isinstance(outcome, Exception):
        raise outcome
    return {"answer": 42}


@operation_kind("test.chatty", label="Test chatty", deadline_seconds=60)
def _chatty(op, progress):  # type: ignore[no-untyped-def]
    for percent, message in BEHAVIOUR["reports"]:  # type: ignore[attr-defined]
        progress(percent, message)
        BEHAVIOUR.setdefault("stored", []).append(  # type: ignore[union-attr]
            Operation.objects.values_list("progress", "message").get(pk=op.pk)
        )
    return {}


@pytest.fixture
def pushed(monkeypatch):  # type: ignore[no-untyped-def]
    """The operation messages browsers would get, in order: (status, progress, message)."""
    sent: list[tuple[str, int | None, str]] = []
    monkeypatch.setattr(
        services, "operation_publish", lambda op, hold=0.0: sent.append((op.status, op.progress, op.message))
    )
    return sent


@pytest.fixture
def queued(monkeypatch):  # type: ignore[no-untyped-def]
    """Capture what would go to the broker instead of needing one (the integration tests use the real one)."""
    sent: list[tuple[int, str]] = []
    monkeypatch.setattr(services, "_enqueue", lambda op_id, kind, queue: sent.append((op_id, queue)))
    BEHAVIOUR.clear()
    return sent


@pytest.fixture
def actor(ada):  # type: ignore[no-untyped-def]
    return Actor(user=ada, ip="192.0.2.7")


def start(actor: Actor) -> Operation:
    return services.operation_start(kind="test.step", target=TARGET, actor=actor)


def claim(op: Operation) -> Operation | None:
    return services.operation_claim(op.pk, op.kind)


def test_start_records_pending_operation_and_audit_and_queues_on_commit(
    actor, queued, django_capture_on_commit_callbacks
):  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        op = start(actor)
    assert op.status == "pending" and op.requested_by == actor.user
    assert queued == [(op.pk, "default")]
    event = AuditEvent.objects.get(operation=op)
    assert (event.action, event.outcome, event.ip, event.actor_name) == ("test.step", "accepted", "192.0.2.7", "ada")


def test_nothing_is_queued_when_the_transaction_rolls_back(actor, queued, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        start(actor)
    assert queued == [] and callbacks  # only queued by the on_commit hook


def test_second_operation_on_same_target_is_refused_naming_the_first(actor, queued):  # type: ignore[no-untyped-def]
    first = start(actor)
    with pytest.raises(Conflict) as refused:
        start(actor)
    assert f"#{first.pk}" in refused.value.message and "ada" in refused.value.message
    assert refused.value.details == {"operation": first.pk}
    assert Operation.objects.count() == 1
    assert AuditEvent.objects.filter(outcome="failed", action="test.step").count() == 1


def test_a_finished_operation_frees_the_target(actor, queued):  # type: ignore[no-untyped-def]
    op = claim(start(actor))
    assert op is not None
    run_claimed(op)
    assert start(actor).status == "pending"


def test_claim_is_atomic_and_happens_once(actor, queued):  # type: ignore[no-untyped-def]
    op = start(actor)
    claimed = claim(op)
    assert claimed is not None and claimed.status == "running" and claimed.started is not None
    assert claimed.attempts == 1
    assert claim(op) is None


def test_claim_is_one_update_that_sets_the_deadline_and_returns_the_row(actor, queued, django_assert_num_queries):  # type: ignore[no-untyped-def]
    op = start(actor)
    with django_assert_num_queries(1):
        claimed = claim(op)
    assert claimed is not None
    stored = Operation.objects.get(pk=op.pk)
    assert (stored.status, stored.attempts, stored.started) == ("running", 1, claimed.started)
    assert stored.deadline == claimed.started + timedelta(seconds=60)  # type: ignore[operator]
    assert (claimed.status, claimed.attempts, claimed.deadline) == ("running", 1, stored.deadline)
    assert claimed.kind == "test.step"
    assert claimed.params == {} and claimed.log == []  # JSON columns come back decoded


def test_claim_of_a_retried_operation_counts_the_attempt(actor, queued):  # type: ignore[no-untyped-def]
    op = start(actor)
    Operation.objects.filter(pk=op.pk).update(attempts=1, message="Retrying in 2 s.")
    claimed = claim(op)
    assert claimed is not None and claimed.attempts == 2 and claimed.message == "Retrying in 2 s."


def test_claim_takes_only_the_kind_the_message_names(actor, queued):  # type: ignore[no-untyped-def]
    op = start(actor)
    assert services.operation_claim(op.pk, "test.chatty") is None
    assert Operation.objects.get(pk=op.pk).status == "pending"


def test_progress_between_pushes_is_written_with_the_next_push_or_the_outcome(actor, queued, pushed, monkeypatch):  # type: ignore[no-untyped-def]
    BEHAVIOUR["reports"] = [(10, "Copying"), (20, "Copying more"), (30, ""), (40, "Nearly"), (50, "")]
    op = services.operation_start(kind="test.chatty", target=TARGET, actor=actor)
    claimed = claim(op)
    # The claim is pushed at 100.0 s; then reports come at 100.1, 100.2, 100.3, 100.5 and 100.55 s.
    clock = iter([100.0, 100.1, 100.2, 100.3, 100.5, 100.55])
    monkeypatch.setattr(services, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    pushed.clear()
    run_claimed(claimed)  # type: ignore[arg-type]
    # Only the reports 0.25 s or more after the last push (100.3 s and 100.55 s) reached the row and the browsers.
    assert BEHAVIOUR["stored"] == [
        (None, ""), (None, ""), (30, "Copying more"), (30, "Copying more"), (50, "Nearly"),
    ]  # fmt: skip
    assert pushed == [("running", 30, "Copying more"), ("running", 50, "Nearly"), ("succeeded", 100, "Done")]
    op.refresh_from_db()
    assert [entry["message"] for entry in op.log] == ["Copying", "Copying more", "Nearly", "Done"]


def test_success_records_result_progress_log_and_audit_outcome(actor, queued):  # type: ignore[no-untyped-def]
    op = claim(start(actor))
    run_claimed(op)  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert (op.status, op.progress, op.result) == ("succeeded", 100, {"answer": 42})  # type: ignore[union-attr]
    assert [entry["message"] for entry in op.log] == ["Halfway", "Done"]  # type: ignore[union-attr]
    assert AuditEvent.objects.get(operation=op).outcome == "succeeded"


def test_permanent_libvirt_error_fails_with_plain_message_and_raw_detail(actor, queued):  # type: ignore[no-untyped-def]
    BEHAVIOUR["outcome"] = virt.InvalidOperation(
        "Cannot start: the VM is already running.", raw="Requested operation is not valid: domain is already running"
    )
    op = claim(start(actor))
    run_claimed(op)  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert op.status == "failed"  # type: ignore[union-attr]
    assert op.error == "Cannot start: the VM is already running."  # type: ignore[union-attr]
    assert "domain is already running" in op.error_detail  # type: ignore[union-attr]
    assert AuditEvent.objects.get(operation=op).outcome == "failed"


def test_transient_error_goes_back_to_pending_for_a_bounded_retry(actor, queued):  # type: ignore[no-untyped-def]
    BEHAVIOUR["outcome"] = virt.HostUnreachable("The host does not answer.", raw="Cannot recv data")
    op = claim(start(actor))
    with pytest.raises(RetryLater) as retry:
        run_claimed(op)  # type: ignore[arg-type]
    assert retry.value.countdown == 2
    op.refresh_from_db()  # type: ignore[union-attr]
    assert op.status == "pending" and "Retrying" in op.message  # type: ignore[union-attr]
    for _ in range(2):
        op = claim(op)  # type: ignore[union-attr]
        with contextlib.suppress(RetryLater):
            run_claimed(op)  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert (op.status, op.attempts) == ("failed", 3)  # type: ignore[union-attr]


def test_project_refusal_fails_the_operation_with_its_message(actor, queued):  # type: ignore[no-untyped-def]
    BEHAVIOUR["outcome"] = Invalid("The host was removed.")
    op = claim(start(actor))
    run_claimed(op)  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert (op.status, op.error) == ("failed", "The host was removed.")  # type: ignore[union-attr]


def test_unexpected_crash_is_recorded_not_left_running(actor, queued):  # type: ignore[no-untyped-def]
    BEHAVIOUR["outcome"] = ZeroDivisionError("boom")
    op = claim(start(actor))
    run_claimed(op)  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert op.status == "failed" and op.error_detail == "ZeroDivisionError: boom"  # type: ignore[union-attr]


def test_reaper_fails_running_operation_past_its_deadline_with_a_reason(actor, queued):  # type: ignore[no-untyped-def]
    op = claim(start(actor))
    Operation.objects.filter(pk=op.pk).update(deadline=timezone.now() - timedelta(seconds=1))  # type: ignore[union-attr]
    assert services.operations_reap() == 1
    op.refresh_from_db()  # type: ignore[union-attr]
    assert op.status == "failed" and "worker stopped responding" in op.error  # type: ignore[union-attr]
    assert AuditEvent.objects.get(operation=op).outcome == "failed"
    # The worker that comes back late cannot overwrite the reaper's verdict.
    assert services.operation_finish(op, status="succeeded") is False  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert op.status == "failed"  # type: ignore[union-attr]


def test_reaper_fails_pending_operation_nobody_picked_up(actor, queued):  # type: ignore[no-untyped-def]
    op = start(actor)
    Operation.objects.filter(pk=op.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    assert services.operations_reap() == 1
    op.refresh_from_db()
    assert op.status == "failed" and "No worker picked" in op.error
    assert "consumes queue 'default' (celery -A kvmweb worker -Q default)" in op.error


def test_reaper_leaves_operations_within_their_deadline(actor, queued):  # type: ignore[no-untyped-def]
    claim(start(actor))
    assert services.operations_reap() == 0


def test_the_task_message_carries_the_kind_and_time_limits_from_its_deadline(monkeypatch):  # type: ignore[no-untyped-def]
    from kvmweb.operations import tasks

    sent: list[dict[str, object]] = []
    monkeypatch.setattr(tasks.run_operation, "apply_async", lambda **message: sent.append(message))
    services._enqueue(7, "test.step", "host.kvm1")
    assert sent == [{"args": [7, "test.step"], "queue": "host.kvm1", "soft_time_limit": 60, "time_limit": 120}]


# --- many at once ----------------------------------------------------------------------------------------------------


def requests(count: int) -> list[services.OperationRequest]:
    return [services.OperationRequest(Target("vm", f"many-{n}", f"vm{n}"), {"n": n}) for n in range(count)]


def test_many_operations_and_their_audit_events_are_one_insert_each(actor, queued, django_assert_num_queries):  # type: ignore[no-untyped-def]
    with django_assert_num_queries(4):  # savepoint, the operations, their audit events, release
        started = services.operations_start(kind="test.step", requests=requests(20), actor=actor)
    assert [op.params for op in started] == [{"n": n} for n in range(20)]  # type: ignore[union-attr]
    accepted = AuditEvent.objects.filter(outcome="accepted", action="test.step")
    assert sorted(accepted.values_list("operation_id", flat=True)) == sorted(op.pk for op in started)  # type: ignore[union-attr]
    # Copied from the operations' rows in SQL: each event names its own target, and who asked from where.
    fields = ("operation_id", "target_type", "target_id", "target_label", "actor_id", "actor_name", "ip", "message")
    assert sorted(accepted.values_list(*fields)) == sorted(
        (op.pk, "vm", f"many-{n}", f"vm{n}", actor.user.pk, "ada", "192.0.2.7", "")  # type: ignore[union-attr]
        for n, op in enumerate(started)
    )
    assert all(created is not None for created in accepted.values_list("created", flat=True))


def test_one_busy_target_refuses_only_itself(actor, queued):  # type: ignore[no-untyped-def]
    busy = services.operation_start(kind="test.step", target=Target("vm", "many-1", "vm1"), actor=actor)
    started = services.operations_start(kind="test.step", requests=requests(3), actor=actor)
    refusal = started[1]
    assert isinstance(refusal, Conflict) and f"#{busy.pk}" in refusal.message
    assert all(isinstance(outcome, Operation) for outcome in (started[0], started[2]))
    assert Operation.objects.filter(target_id="many-1").count() == 1
    assert AuditEvent.objects.filter(target_id="many-1", outcome="failed", message=refusal.message).exists()


def test_operations_queued_together_reach_the_broker_once_it_ends(
    actor, monkeypatch, django_capture_on_commit_callbacks
):  # type: ignore[no-untyped-def]
    batches: list[list[tuple[int, str, str]]] = []
    monkeypatch.setattr(services, "_send", batches.append)
    with services.operations_queued_together():
        with django_capture_on_commit_callbacks(execute=True):
            started = services.operations_start(kind="test.step", requests=requests(3), actor=actor)
        assert batches == []
    assert batches == [[(op.pk, "test.step", "default") for op in started]]  # type: ignore[union-attr]


def test_a_batch_of_task_messages_lands_in_the_brokers_queue(settings):  # type: ignore[no-untyped-def]
    from kvmweb.celery import app

    queue = "test-batch-send"
    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        client.delete(queue)
        services._send([(1, "test.step", queue), (2, "test.step", queue), (3, "test.chatty", queue)])
        bodies = [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]
        client.delete(queue)
    assert [(body["headers"]["argsrepr"], body["headers"]["timelimit"]) for body in bodies] == [
        ("[1, 'test.step']", [120, 60]),
        ("[2, 'test.step']", [120, 60]),
        ("[3, 'test.chatty']", [120, 60]),
    ]


# --- batches ---------------------------------------------------------------------------------------------------------

PRELOADS: list[list[str]] = []


def _preload_quick(ops):  # type: ignore[no-untyped-def]
    PRELOADS.append([op.target_id for op in ops])
    for op in ops:
        op.target_row = f"row of {op.target_id}"


@operation_kind(
    "test.quick", label="Test quick", deadline_seconds=30, retry_transient=False, batch=4, preload=_preload_quick
)
def _quick(op, progress):  # type: ignore[no-untyped-def]
    outcome = BEHAVIOUR.get(op.target_id)
    if isinstance(outcome, BaseException):
        raise outcome
    return {"row": op.target_row}


def quick_batch(actor: Actor, count: int) -> list[Operation]:
    PRELOADS.clear()
    started = services.operations_start(kind="test.quick", requests=requests(count), actor=actor)
    return services.operations_claim([op.pk for op in started], "test.quick")  # type: ignore[union-attr]


def test_a_batching_kind_refuses_transient_retries():  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="batch"):
        operation_kind("test.bad-batch", label="Bad", batch=2)


def test_a_batching_kinds_operations_share_tasks_split_evenly_per_queue(monkeypatch):  # type: ignore[no-untyped-def]
    from kvmweb.operations import tasks

    messages = [(n, "test.quick", "host.a") for n in range(1, 11)]
    messages += [(11, "test.quick", "host.b"), (12, "test.step", "host.a"), (13, "test.step", "host.a")]
    sent = [(task.name, options["args"], options["queue"]) for task, options in services._task_messages(messages)]
    assert sent == [
        (tasks.run_operations.name, [[1, 2, 3], "test.quick"], "host.a"),
        (tasks.run_operations.name, [[4, 5, 6], "test.quick"], "host.a"),
        (tasks.run_operations.name, [[7, 8, 9, 10], "test.quick"], "host.a"),
        (tasks.run_operation.name, [11, "test.quick"], "host.b"),  # alone on its queue: the one-operation task
        (tasks.run_operation.name, [12, "test.step"], "host.a"),
        (tasks.run_operation.name, [13, "test.step"], "host.a"),
    ]


def test_a_batch_is_claimed_in_one_update_in_the_order_sent_skipping_what_is_gone(
    actor, queued, django_assert_num_queries
):  # type: ignore[no-untyped-def]
    started = services.operations_start(kind="test.quick", requests=requests(3), actor=actor)
    ids = [op.pk for op in reversed(started)]  # type: ignore[union-attr]
    Operation.objects.filter(pk=ids[1]).update(status="failed")  # reaped before a worker got to it
    with django_assert_num_queries(1):
        claimed = services.operations_claim(ids, "test.quick")
    assert [op.pk for op in claimed] == [ids[0], ids[2]]
    assert {op.status for op in claimed} == {"running"} and claimed[0].started == claimed[1].started


def test_a_batch_reads_its_targets_once_and_records_its_outcomes_in_one_transaction(
    actor, queued, pushed, django_assert_num_queries
):  # type: ignore[no-untyped-def]
    ops = quick_batch(actor, 3)
    pushed.clear()
    # savepoint, the 3 outcomes in one UPDATE, their audit events in another, release
    with django_assert_num_queries(4):
        run_claimed_batch(ops)
    assert PRELOADS == [["many-0", "many-1", "many-2"]]
    stored = Operation.objects.filter(pk__in=[op.pk for op in ops]).order_by("pk")
    assert [(op.status, op.result) for op in stored] == [("succeeded", {"row": f"row of many-{n}"}) for n in range(3)]
    assert AuditEvent.objects.filter(operation__in=ops, outcome="succeeded").count() == 3
    assert pushed == [("succeeded", 100, "Done")] * 3


def test_one_failure_in_a_batch_fails_only_its_operation(actor, queued):  # type: ignore[no-untyped-def]
    ops = quick_batch(actor, 3)
    BEHAVIOUR["many-1"] = Invalid("vm1 is no longer on its host.")
    run_claimed_batch(ops)
    stored = dict(Operation.objects.filter(pk__in=[op.pk for op in ops]).values_list("target_id", "status"))
    assert stored == {"many-0": "succeeded", "many-1": "failed", "many-2": "succeeded"}
    failed = AuditEvent.objects.get(operation=ops[1])
    assert (failed.outcome, failed.message) == ("failed", "vm1 is no longer on its host.")
    assert AuditEvent.objects.filter(operation__in=[ops[0], ops[2]], outcome="succeeded").count() == 2


def test_a_batch_out_of_time_fails_the_operations_it_did_not_reach(actor, queued):  # type: ignore[no-untyped-def]
    from celery.exceptions import SoftTimeLimitExceeded

    ops = quick_batch(actor, 3)
    BEHAVIOUR["many-1"] = SoftTimeLimitExceeded()
    BEHAVIOUR["many-2"] = AssertionError("the batch ran on after its time was up")
    run_claimed_batch(ops)
    stored = list(Operation.objects.filter(pk__in=[op.pk for op in ops]).order_by("pk").values_list("status", "error"))
    assert stored[0] == ("succeeded", "")
    assert stored[1:] == [("failed", "The operation took longer than its time limit.")] * 2


def test_outcomes_a_batch_holds_are_recorded_once_push_interval_passed(actor, queued, pushed, monkeypatch):  # type: ignore[no-untyped-def]
    from kvmweb.operations import runner

    ops = quick_batch(actor, 3)
    # The first ends at 10.0 s, the second at 10.3 s: both are recorded then; the third at the end.
    clock = iter([10.0, 10.0, 10.3, 10.4, 10.4])
    monkeypatch.setattr(runner, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    recorded: list[list[int]] = []
    finish = runner.operations_finish
    monkeypatch.setattr(
        runner, "operations_finish", lambda ends: recorded.append([op.pk for op, _ in ends]) or finish(ends)
    )
    run_claimed_batch(ops)
    assert recorded == [[ops[0].pk, ops[1].pk], [ops[2].pk]]


SETTLED: list[list[str]] = []


def _settle_flaky(ops):  # type: ignore[no-untyped-def]
    SETTLED.append([op.target_id for op in ops])
    assert all(op.status == "running" for op in Operation.objects.filter(pk__in=[op.pk for op in ops]))
    raise RuntimeError("the settle's database write failed")


@operation_kind(
    "test.settled",
    label="Test settled",
    deadline_seconds=30,
    retry_transient=False,
    batch=4,
    preload=_preload_quick,
    settle=_settle_flaky,
)
def _settled(op, progress):  # type: ignore[no-untyped-def]
    return {}


def test_a_batch_settles_before_its_outcomes_and_a_failed_settle_still_ends_them(actor, queued, pushed):  # type: ignore[no-untyped-def]
    SETTLED.clear()
    started = services.operations_start(kind="test.settled", requests=requests(2), actor=actor)
    ops = services.operations_claim([op.pk for op in started], "test.settled")  # type: ignore[union-attr]
    run_claimed_batch(ops)
    assert SETTLED == [["many-0", "many-1"]]
    assert set(Operation.objects.filter(pk__in=[op.pk for op in ops]).values_list("status", flat=True)) == {"succeeded"}


def test_a_reaped_operation_in_a_batch_keeps_the_reapers_outcome(actor, queued, pushed):  # type: ignore[no-untyped-def]
    ops = quick_batch(actor, 2)
    Operation.objects.filter(pk=ops[0].pk).update(status="failed", error="reaped")
    pushed.clear()
    recorded = services.operations_finish([(op, services.Outcome("succeeded")) for op in ops])
    assert recorded == [ops[1]]
    assert Operation.objects.get(pk=ops[0].pk).error == "reaped"
    assert pushed == [("succeeded", 100, "Done")]


def test_a_new_operation_is_pushed_once_committed(actor, queued, monkeypatch, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    pushes: list[tuple[str, float]] = []
    monkeypatch.setattr(services, "operation_publish", lambda op, hold=0.0: pushes.append((op.status, hold)))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        start(actor)
    assert pushes == []  # a request that rolls back tells no browser about an operation that never was
    for callback in callbacks:
        callback()
    assert pushes == [("pending", 0.0)]


def test_claiming_nothing_asks_nothing(db, django_assert_num_queries):  # type: ignore[no-untyped-def]
    with django_assert_num_queries(0):
        assert services.operations_claim([], "test.quick") == []
