"""Writes for operations: create and queue, claim, report progress, finish, reap."""

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_close_for_operation, audit_event, audit_record
from kvmweb.errors import Conflict
from kvmweb.operations.messages import operation_groups, operation_payload
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import get_kind
from kvmweb.realtime.publish import publish
from kvmweb.targets import Target

log = logging.getLogger(__name__)

# Progress reports faster than this are neither written nor pushed at once: a copy loop must not flood
# sockets or the database. The next pushed report, or the outcome, carries them.
PUSH_INTERVAL = 0.25
LOG_LIMIT = 200


def operation_publish(op: Operation, *, hold: float = 0.0) -> None:
    """Push `op` as it stands; a newer push of it replaces one still held back (see `publish`)."""
    message = {"type": "operation", "operation": operation_payload(op)}
    publish(operation_groups(op), message, key=f"operation:{op.pk}", hold=hold)


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """One target for `operations_start`, with what its operation receives and the queue it runs on."""

    target: Target
    params: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"


def operation_start(
    *,
    kind: str,
    target: Target,
    actor: Actor,
    params: dict[str, Any] | None = None,
    queue: str = "default",
    audited: bool = True,
) -> Operation:
    """Record the operation and its audit event, and queue it for a worker once committed.

    Raises Conflict, naming the running operation, when the target already has an active one.
    Housekeeping the system starts on a timer (`audited=False`) is an operation but not an audit event.
    """
    request = OperationRequest(target, params or {}, queue)
    outcome = operations_start(kind=kind, requests=[request], actor=actor, audited=audited)[0]
    if isinstance(outcome, Conflict):
        raise outcome
    return outcome


def operations_start(
    *, kind: str, requests: Sequence[OperationRequest], actor: Actor, audited: bool = True
) -> list[Operation | Conflict]:
    """`operation_start` for many targets at once: an Operation, or the Conflict refusing it, for each.

    The operations and their audit events are written with one INSERT each, not a pair per target: a
    bulk request over 100 VMs would otherwise spend most of its time in round trips. When one target
    is busy the batch is refused whole by the database, and each target then goes on its own.
    """
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    deadline = timezone.now() + timedelta(seconds=get_kind(kind).deadline_seconds)
    ops = [_new_operation(kind, request, user, deadline) for request in requests]
    try:
        with transaction.atomic():
            Operation.objects.bulk_create(ops)
            if audited:
                accepted = AuditEvent.Outcome.ACCEPTED
                events = [
                    audit_event(actor=actor, action=kind, target=op.target, outcome=accepted, operation_id=op.pk)
                    for op in ops
                ]
                AuditEvent.objects.bulk_create(events)
    except IntegrityError:
        if len(requests) == 1:
            return [_refuse_busy(kind, requests[0].target, actor, audited)]
        return [operations_start(kind=kind, requests=[one], actor=actor, audited=audited)[0] for one in requests]
    for op in ops:
        operation_publish(op)
        transaction.on_commit(partial(_enqueue, op.pk, kind, op.queue))
    return list(ops)


def _new_operation(kind: str, request: OperationRequest, user: Any, deadline: datetime) -> Operation:
    target = request.target
    return Operation(
        kind=kind,
        target_type=target.type,
        target_id=target.id,
        target_label=target.label,
        requested_by=user,  # the instance, not its id: the response names the user without a query
        params=request.params,
        queue=request.queue,
        deadline=deadline,
    )


def _refuse_busy(kind: str, target: Target, actor: Actor, audited: bool) -> Conflict:
    running = Operation.objects.filter(
        target_type=target.type, target_id=target.id, status__in=Operation.ACTIVE
    ).first()
    reason = _conflict_message(target, running)
    if audited:
        audit_record(actor=actor, action=kind, target=target, outcome=AuditEvent.Outcome.FAILED, message=reason)
    return Conflict(reason, details={"operation": running.pk if running else None})


def _conflict_message(target: Target, running: Operation | None) -> str:
    if running is None:
        return f"Another operation on {target.label} started at the same moment; try again."
    who = running.requested_by.get_username() if running.requested_by else "the system"
    return f"{target.label} is busy: {running.kind_label} (#{running.pk}, requested by {who}) is {running.status}."


_held = threading.local()


@contextmanager
def operations_queued_together() -> Iterator[None]:
    """Operations committed within are handed to the broker together, in one Redis round trip, at the end.

    Wrap it around a bulk request's transaction: a message each, sent one by one, cost the API about
    a millisecond per VM. Outside it (or nested in it) an operation is queued as soon as it commits.
    """
    if getattr(_held, "messages", None) is not None:
        yield
        return
    _held.messages = []
    try:
        yield
    finally:
        # Whatever committed is sent, even when the block raised after its transaction ended.
        messages, _held.messages = _held.messages, None
        _send(messages)


def _enqueue(op_id: int, kind: str, queue: str) -> None:
    held = getattr(_held, "messages", None)
    if held is not None:
        held.append((op_id, kind, queue))
    else:
        _send([(op_id, kind, queue)])


def _send(messages: list[tuple[int, str, str]]) -> None:
    from kvmweb.operations.tasks import run_operation

    if len(messages) <= 1:
        for message in messages:
            run_operation.apply_async(**_task_options(*message))
        return
    with run_operation.app.producer_or_acquire() as producer, producer.batch():
        for message in messages:
            run_operation.apply_async(producer=producer, **_task_options(*message))


def _task_options(op_id: int, kind: str, queue: str) -> dict[str, Any]:
    # Celery's own limits follow the kind's deadline, so a six-hour copy is not cut at the hour the
    # worker's defaults allow; the hard limit leaves the soft one a minute to record the failure.
    limit = get_kind(kind).deadline_seconds
    return {"args": [op_id, kind], "queue": queue, "soft_time_limit": limit, "time_limit": limit + 60}


def operation_claim(op_id: int, kind: str) -> Operation | None:
    """Take a pending operation for this worker; None when another worker or the reaper got it.

    One conditional UPDATE claims the row, sets its deadline from its kind (which the task message
    carries, so nothing is read first) and returns it: a claim is one statement and one commit.
    A pending row changes only by being claimed or reaped, so the row returned is the row claimed.
    """
    now = timezone.now()
    deadline = now + timedelta(seconds=get_kind(kind).deadline_seconds)
    ops = connection.ops
    claimed = list(
        Operation.objects.raw(
            _CLAIM_SQL.format(table=ops.quote_name(Operation._meta.db_table)),
            [
                Operation.Status.RUNNING,
                ops.adapt_datetimefield_value(now),
                ops.adapt_datetimefield_value(deadline),
                op_id,
                kind,
                Operation.Status.PENDING,
            ],
        )
    )
    if not claimed:
        return None
    # Held back: an action that ends within PUSH_INTERVAL (most do) pushes its outcome, not "running" first.
    operation_publish(claimed[0], hold=PUSH_INTERVAL)
    return claimed[0]


# PostgreSQL and SQLite (3.35+) both return the updated row.
_CLAIM_SQL = (
    "UPDATE {table} SET status = %s, started = %s, deadline = %s, attempts = attempts + 1"
    " WHERE id = %s AND kind = %s AND status = %s RETURNING *"
)


class Progress:
    """Handed to a handler: `progress(40, "Copying disk")` records and pushes where it stands.

    A report within PUSH_INTERVAL of the last push is kept on the operation in memory only: the next
    report that is pushed, or the outcome, writes it (its log line included). The row is written when
    browsers are told, so a copy loop reporting every block costs no commit per block. The claim (its push
    held back as long) counts as the first report: an action done within PUSH_INTERVAL writes its row once, at the end.
    """

    def __init__(self, op: Operation) -> None:
        self.op = op
        self._pushed_at = time.monotonic()

    def __call__(self, percent: int | None = None, message: str = "") -> None:
        op = self.op
        if percent is not None:
            op.progress = max(0, min(100, int(percent)))
        if message and message != op.message:
            op.message = message[:255]
            op.log = [*op.log, {"at": timezone.now().isoformat(), "message": message}][-LOG_LIMIT:]
        now = time.monotonic()
        if now - self._pushed_at < PUSH_INTERVAL and op.progress != 100:
            return
        self._pushed_at = now
        Operation.objects.filter(pk=op.pk, status=Operation.Status.RUNNING).update(
            progress=op.progress, message=op.message, log=op.log
        )
        operation_publish(op)


def operation_finish(
    op: Operation,
    *,
    status: str,
    error: str = "",
    error_detail: str = "",
    result: dict[str, Any] | None = None,
) -> bool:
    """Record the outcome; False when the reaper already ended it."""
    op.status = status
    op.finished = timezone.now()
    op.error = error
    op.error_detail = error_detail
    op.result = result or {}
    if status == Operation.Status.SUCCEEDED:
        op.progress = 100
    closing = error or ("Done" if status == Operation.Status.SUCCEEDED else status)
    op.message = closing[:255]
    op.log = [*op.log, {"at": op.finished.isoformat(), "message": closing}][-LOG_LIMIT:]
    with transaction.atomic():
        updated = Operation.objects.filter(pk=op.pk, status=Operation.Status.RUNNING).update(
            status=status,
            finished=op.finished,
            error=error,
            error_detail=error_detail,
            result=op.result,
            progress=op.progress,
            message=op.message,
            log=op.log,
        )
        if not updated:
            return False
        audit_close_for_operation(operation_id=op.pk, outcome=_audit_outcome(status), message=error)
        operation_publish(op)
    return True


def operation_requeue(op: Operation, *, message: str) -> None:
    """Put a running operation back to pending, for a retry after a transient failure."""
    op.status = Operation.Status.PENDING
    op.message = message[:255]
    op.log = [*op.log, {"at": timezone.now().isoformat(), "message": message}][-LOG_LIMIT:]
    Operation.objects.filter(pk=op.pk, status=Operation.Status.RUNNING).update(
        status=op.status, message=op.message, log=op.log
    )
    operation_publish(op)


def _audit_outcome(status: str) -> str:
    if status == Operation.Status.SUCCEEDED:
        return AuditEvent.Outcome.SUCCEEDED
    return AuditEvent.Outcome.FAILED


def operations_reap() -> int:
    """Fail operations whose worker died or that no worker picked up, past their deadline."""
    now = timezone.now()
    stale = list(Operation.objects.filter(status__in=Operation.ACTIVE, deadline__lt=now))
    reaped = 0
    for op in stale:
        if op.status == Operation.Status.RUNNING:
            reason = (
                f"The worker stopped responding: the operation was still running at its deadline "
                f"({op.deadline:%Y-%m-%d %H:%M:%S %Z})."
            )
        else:
            reason = (
                f"No worker picked this operation up before its deadline: is a worker running that consumes "
                f"queue {op.queue!r} (celery -A kvmweb worker -Q {op.queue})?"
            )
        reaped += _reap_one(op, reason)
    return reaped


def _reap_one(op: Operation, reason: str) -> int:
    now = timezone.now()
    with transaction.atomic():
        updated = Operation.objects.filter(pk=op.pk, status=op.status).update(
            status=Operation.Status.FAILED, finished=now, error=reason
        )
        if not updated:
            return 0
        op.status, op.finished, op.error = Operation.Status.FAILED, now, reason
        audit_close_for_operation(operation_id=op.pk, outcome=AuditEvent.Outcome.FAILED, message=reason)
        operation_publish(op)
    log.warning("reaped operation %s: %s", op.pk, reason)
    return 1
