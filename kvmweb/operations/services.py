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
from kvmweb.audit.services import audit_accept_operations, audit_close_for_operation, audit_record
from kvmweb.errors import Conflict
from kvmweb.operations.messages import operation_groups, operation_payload
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import get_kind
from kvmweb.realtime.publish import publish
from kvmweb.rows import rows_update
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
                audit_accept_operations(actor=actor, action=kind, operation_ids=[op.pk for op in ops])
    except IntegrityError:
        if len(requests) == 1:
            return [_refuse_busy(kind, requests[0].target, actor, audited)]
        return [operations_start(kind=kind, requests=[one], actor=actor, audited=audited)[0] for one in requests]
    for op in ops:
        transaction.on_commit(partial(_enqueue, op.pk, kind, op.queue))
        # Once committed: a request that rolls back tells no browser of an operation that never was. Never held
        # back by `hold`: a worker's pushes come from another process, so a held "pending" would arrive after the
        # outcome. Within operations_queued_together it waits for the task messages only.
        transaction.on_commit(partial(_announce, op))
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
    _held.messages, _held.announced = [], []
    try:
        yield
    finally:
        # Whatever committed is sent, even when the block raised after its transaction ended. The workers get
        # their messages first: a bulk request's "pending" pushes cost the API a few milliseconds to build.
        messages, _held.messages = _held.messages, None
        announced, _held.announced = _held.announced, None
        _send(messages)
        for op in announced:
            operation_publish(op)


def _enqueue(op_id: int, kind: str, queue: str) -> None:
    held = getattr(_held, "messages", None)
    if held is not None:
        held.append((op_id, kind, queue))
    else:
        _send([(op_id, kind, queue)])


def _announce(op: Operation) -> None:
    held = getattr(_held, "announced", None)
    if held is not None:
        held.append(op)
    else:
        operation_publish(op)


def _send(messages: list[tuple[int, str, str]]) -> None:
    tasks = _task_messages(messages)
    if len(tasks) <= 1:
        for task, options in tasks:
            task.apply_async(**options)
        return
    app = tasks[0][0].app
    with app.producer_or_acquire() as producer, producer.batch():
        for task, options in tasks:
            task.apply_async(producer=producer, **options)


def _task_messages(messages: list[tuple[int, str, str]]) -> list[tuple[Any, dict[str, Any]]]:
    """A task each, except that operations of a batching kind on one queue share tasks of up to its batch."""
    from kvmweb.operations.tasks import run_operation, run_operations

    batches: dict[tuple[str, str], list[int]] = {}
    for op_id, kind, queue in messages:
        batches.setdefault((kind, queue), []).append(op_id)
    tasks = []
    for (kind, queue), ids in batches.items():
        for chunk in _even_chunks(ids, get_kind(kind).batch):
            if len(chunk) == 1:
                tasks.append((run_operation, _task_options([chunk[0], kind], kind, queue)))
            else:
                tasks.append((run_operations, _task_options([chunk, kind], kind, queue)))
    return tasks


def _even_chunks(ids: list[int], most: int) -> list[list[int]]:
    # Ten operations at most eight a task are two tasks of five, which two workers finish together.
    parts = -(-len(ids) // most)
    return [ids[n * len(ids) // parts : (n + 1) * len(ids) // parts] for n in range(parts)]


def _task_options(args: list[Any], kind: str, queue: str) -> dict[str, Any]:
    # Celery's own limits follow the kind's deadline, so a six-hour copy is not cut at the hour the
    # worker's defaults allow; the hard limit leaves the soft one a minute to record the failure.
    # A batch shares one deadline too: its operations are claimed together.
    limit = get_kind(kind).deadline_seconds
    return {"args": args, "queue": queue, "soft_time_limit": limit, "time_limit": limit + 60}


def operation_claim(op_id: int, kind: str) -> Operation | None:
    """Take a pending operation for this worker; None when another worker or the reaper got it."""
    claimed = operations_claim([op_id], kind)
    return claimed[0] if claimed else None


def operations_claim(op_ids: Sequence[int], kind: str) -> list[Operation]:
    """Take those of these pending operations no other worker or the reaper got, in the order given.

    One conditional UPDATE claims the rows, sets their deadline from their kind (which the task message
    carries, so nothing is read first) and returns them: a claim is one statement and one commit.
    A pending row changes only by being claimed or reaped, so the rows returned are the rows claimed.
    """
    if not op_ids:
        return []
    now = timezone.now()
    deadline = now + timedelta(seconds=get_kind(kind).deadline_seconds)
    ops = connection.ops
    sql = _CLAIM_SQL.format(table=ops.quote_name(Operation._meta.db_table), ids=", ".join(["%s"] * len(op_ids)))
    params = [
        Operation.Status.RUNNING,
        ops.adapt_datetimefield_value(now),
        ops.adapt_datetimefield_value(deadline),
        *op_ids,
        kind,
        Operation.Status.PENDING,
    ]
    order = {op_id: n for n, op_id in enumerate(op_ids)}
    claimed = sorted(Operation.objects.raw(sql, params), key=lambda op: order[op.pk])
    for op in claimed:
        # Held back: an action that ends within PUSH_INTERVAL (most do) pushes its outcome, not "running" first.
        operation_publish(op, hold=PUSH_INTERVAL)
    return claimed


# PostgreSQL and SQLite (3.35+) both return the updated rows.
_CLAIM_SQL = (
    "UPDATE {table} SET status = %s, started = %s, deadline = %s, attempts = attempts + 1"
    " WHERE id IN ({ids}) AND kind = %s AND status = %s RETURNING *"
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


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a claimed operation ended, before it is recorded."""

    status: str
    error: str = ""
    error_detail: str = ""
    result: dict[str, Any] | None = None


def operation_finish(
    op: Operation,
    *,
    status: str,
    error: str = "",
    error_detail: str = "",
    result: dict[str, Any] | None = None,
) -> bool:
    """Record the outcome; False when the reaper already ended it."""
    return bool(operations_finish([(op, Outcome(status, error, error_detail, result))]))


def operations_finish(ends: Sequence[tuple[Operation, Outcome]]) -> list[Operation]:
    """Record outcomes in one transaction, and push them; returns those recorded (the reaper ends the others).

    A batch's audit events close with one UPDATE per distinct outcome, most often one in all.
    """
    for op, outcome in ends:
        _take_outcome(op, outcome)
    with transaction.atomic():
        recorded = _write_outcomes([op for op, _ in ends])
        closing: dict[tuple[str, str], list[int]] = {}
        for op in recorded:
            closing.setdefault((_audit_outcome(op.status), op.error), []).append(op.pk)
        for (audit_outcome, message), op_ids in closing.items():
            audit_close_for_operation(operation_ids=op_ids, outcome=audit_outcome, message=message)
        for op in recorded:
            operation_publish(op)
    return recorded


def _take_outcome(op: Operation, outcome: Outcome) -> None:
    op.status = outcome.status
    op.finished = timezone.now()
    op.error = outcome.error
    op.error_detail = outcome.error_detail
    op.result = outcome.result or {}
    if outcome.status == Operation.Status.SUCCEEDED:
        op.progress = 100
    closing = outcome.error or ("Done" if outcome.status == Operation.Status.SUCCEEDED else outcome.status)
    op.message = closing[:255]
    op.log = [*op.log, {"at": op.finished.isoformat(), "message": closing}][-LOG_LIMIT:]


def _write_outcomes(ops: list[Operation]) -> list[Operation]:
    """Write outcomes to the rows still running; returns the operations written."""
    written = rows_update(ops, _OUTCOME_FIELDS, guard=("status", Operation.Status.RUNNING))
    return [op for op in ops if op.pk in written]


_OUTCOME_FIELDS = ("status", "finished", "error", "error_detail", "result", "progress", "message", "log")


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
        audit_close_for_operation(operation_ids=[op.pk], outcome=AuditEvent.Outcome.FAILED, message=reason)
        operation_publish(op)
    log.warning("reaped operation %s: %s", op.pk, reason)
    return 1
