"""Operations: create and queue on commit, claim once, refuse conflicts, record outcomes, reap the stale."""

import contextlib
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
from kvmweb.operations.runner import RetryLater, run_claimed
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
    monkeypatch.setattr(services, "operation_publish", lambda op: sent.append((op.status, op.progress, op.message)))
    return sent


@pytest.fixture
def queued(monkeypatch):  # type: ignore[no-untyped-def]
    """Capture what would go to the broker instead of needing one (the integration tests use the real one)."""
    sent: list[tuple[int, str]] = []
    monkeypatch.setattr(services, "_enqueue", lambda op_id, queue: sent.append((op_id, queue)))
    BEHAVIOUR.clear()
    return sent


@pytest.fixture
def actor(ada):  # type: ignore[no-untyped-def]
    return Actor(user=ada, ip="192.0.2.7")


def start(actor: Actor) -> Operation:
    return services.operation_start(kind="test.step", target=TARGET, actor=actor)


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
    op = services.operation_claim(start(actor).pk)
    assert op is not None
    run_claimed(op)
    assert start(actor).status == "pending"


def test_claim_is_atomic_and_happens_once(actor, queued):  # type: ignore[no-untyped-def]
    op = start(actor)
    claimed = services.operation_claim(op.pk)
    assert claimed is not None and claimed.status == "running" and claimed.started is not None
    assert claimed.attempts == 1
    assert services.operation_claim(op.pk) is None


def test_claim_is_one_read_and_one_conditional_update_that_sets_the_deadline(actor, queued, django_assert_num_queries):  # type: ignore[no-untyped-def]
    op = start(actor)
    with django_assert_num_queries(2):
        claimed = services.operation_claim(op.pk)
    assert claimed is not None
    stored = Operation.objects.get(pk=op.pk)
    assert (stored.status, stored.attempts, stored.started) == ("running", 1, claimed.started)
    assert stored.deadline == claimed.started + timedelta(seconds=60)  # type: ignore[operator]
    assert (claimed.status, claimed.attempts, claimed.deadline) == ("running", 1, stored.deadline)


def test_claim_loses_to_a_worker_that_claimed_after_its_read(actor, queued, monkeypatch):  # type: ignore[no-untyped-def]
    op = start(actor)
    get_kind = services.get_kind

    def meanwhile(name: str):  # type: ignore[no-untyped-def]
        # Between this worker's read and its UPDATE, another claims the operation and puts it back to pending.
        Operation.objects.filter(pk=op.pk).update(attempts=1, message="Retrying in 2 s.")
        return get_kind(name)

    monkeypatch.setattr(services, "get_kind", meanwhile)
    assert services.operation_claim(op.pk) is None
    stored = Operation.objects.get(pk=op.pk)
    assert (stored.status, stored.attempts, stored.started) == ("pending", 1, None)


def test_progress_between_pushes_is_written_with_the_next_push_or_the_outcome(actor, queued, pushed, monkeypatch):  # type: ignore[no-untyped-def]
    BEHAVIOUR["reports"] = [(10, "Copying"), (20, "Copying more"), (30, ""), (40, "Nearly"), (50, "")]
    op = services.operation_start(kind="test.chatty", target=TARGET, actor=actor)
    clock = iter([100.0, 100.1, 100.2, 100.4, 100.45])
    monkeypatch.setattr(services, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    pushed.clear()
    run_claimed(services.operation_claim(op.pk))  # type: ignore[arg-type]
    # Only the reports at 100.0 s and 100.4 s (0.25 s or more apart) reached the row and the browsers.
    assert BEHAVIOUR["stored"] == [(10, "Copying"), (10, "Copying"), (10, "Copying"), (40, "Nearly"), (40, "Nearly")]
    assert pushed == [
        ("running", None, ""),
        ("running", 10, "Copying"),
        ("running", 40, "Nearly"),
        ("succeeded", 100, "Done"),
    ]
    op.refresh_from_db()
    assert [entry["message"] for entry in op.log] == ["Copying", "Copying more", "Nearly", "Done"]


def test_success_records_result_progress_log_and_audit_outcome(actor, queued):  # type: ignore[no-untyped-def]
    op = services.operation_claim(start(actor).pk)
    run_claimed(op)  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert (op.status, op.progress, op.result) == ("succeeded", 100, {"answer": 42})  # type: ignore[union-attr]
    assert [entry["message"] for entry in op.log] == ["Halfway", "Done"]  # type: ignore[union-attr]
    assert AuditEvent.objects.get(operation=op).outcome == "succeeded"


def test_permanent_libvirt_error_fails_with_plain_message_and_raw_detail(actor, queued):  # type: ignore[no-untyped-def]
    BEHAVIOUR["outcome"] = virt.InvalidOperation(
        "Cannot start: the VM is already running.", raw="Requested operation is not valid: domain is already running"
    )
    op = services.operation_claim(start(actor).pk)
    run_claimed(op)  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert op.status == "failed"  # type: ignore[union-attr]
    assert op.error == "Cannot start: the VM is already running."  # type: ignore[union-attr]
    assert "domain is already running" in op.error_detail  # type: ignore[union-attr]
    assert AuditEvent.objects.get(operation=op).outcome == "failed"


def test_transient_error_goes_back_to_pending_for_a_bounded_retry(actor, queued):  # type: ignore[no-untyped-def]
    BEHAVIOUR["outcome"] = virt.HostUnreachable("The host does not answer.", raw="Cannot recv data")
    op = services.operation_claim(start(actor).pk)
    with pytest.raises(RetryLater) as retry:
        run_claimed(op)  # type: ignore[arg-type]
    assert retry.value.countdown == 2
    op.refresh_from_db()  # type: ignore[union-attr]
    assert op.status == "pending" and "Retrying" in op.message  # type: ignore[union-attr]
    for _ in range(2):
        op = services.operation_claim(op.pk)  # type: ignore[union-attr]
        with contextlib.suppress(RetryLater):
            run_claimed(op)  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert (op.status, op.attempts) == ("failed", 3)  # type: ignore[union-attr]


def test_project_refusal_fails_the_operation_with_its_message(actor, queued):  # type: ignore[no-untyped-def]
    BEHAVIOUR["outcome"] = Invalid("The host was removed.")
    op = services.operation_claim(start(actor).pk)
    run_claimed(op)  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert (op.status, op.error) == ("failed", "The host was removed.")  # type: ignore[union-attr]


def test_unexpected_crash_is_recorded_not_left_running(actor, queued):  # type: ignore[no-untyped-def]
    BEHAVIOUR["outcome"] = ZeroDivisionError("boom")
    op = services.operation_claim(start(actor).pk)
    run_claimed(op)  # type: ignore[arg-type]
    op.refresh_from_db()  # type: ignore[union-attr]
    assert op.status == "failed" and op.error_detail == "ZeroDivisionError: boom"  # type: ignore[union-attr]


def test_reaper_fails_running_operation_past_its_deadline_with_a_reason(actor, queued):  # type: ignore[no-untyped-def]
    op = services.operation_claim(start(actor).pk)
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


def test_reaper_leaves_operations_within_their_deadline(actor, queued):  # type: ignore[no-untyped-def]
    services.operation_claim(start(actor).pk)
    assert services.operations_reap() == 0
