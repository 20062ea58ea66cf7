"""Writes for operations: create and queue, claim, report progress, finish, reap."""

import logging
import time
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_close_for_operation, audit_record
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


def operation_publish(op: Operation) -> None:
    publish(operation_groups(op), {"type": "operation", "operation": operation_payload(op)})


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
    spec = get_kind(kind)
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    try:
        with transaction.atomic():
            op = Operation.objects.create(
                kind=kind,
                target_type=target.type,
                target_id=target.id,
                target_label=target.label,
                requested_by_id=user.pk if user else None,
                params=params or {},
                queue=queue,
                deadline=timezone.now() + timedelta(seconds=spec.deadline_seconds),
            )
            if audited:
                audit_record(
                    actor=actor, action=kind, target=target, outcome=AuditEvent.Outcome.ACCEPTED, operation_id=op.pk
                )
            operation_publish(op)
            transaction.on_commit(lambda: _enqueue(op.pk, queue))
    except IntegrityError:
        running = Operation.objects.filter(
            target_type=target.type, target_id=target.id, status__in=Operation.ACTIVE
        ).first()
        reason = _conflict_message(target, running)
        if audited:
            audit_record(actor=actor, action=kind, target=target, outcome=AuditEvent.Outcome.FAILED, message=reason)
        raise Conflict(reason, details={"operation": running.pk if running else None}) from None
    return op


def _conflict_message(target: Target, running: Operation | None) -> str:
    if running is None:
        return f"Another operation on {target.label} started at the same moment; try again."
    who = running.requested_by.get_username() if running.requested_by else "the system"
    return f"{target.label} is busy: {running.kind_label} (#{running.pk}, requested by {who}) is {running.status}."


def _enqueue(op_id: int, queue: str) -> None:
    from kvmweb.operations.tasks import run_operation

    run_operation.apply_async(args=[op_id], queue=queue)


def operation_claim(op_id: int) -> Operation | None:
    """Take a pending operation for this worker; None when another worker or the reaper got it.

    One conditional UPDATE both claims the row and sets its deadline, so a claim costs one commit.
    It matches only while the row is still pending at the attempt count read just before, and a
    pending row changes only by being claimed (which counts an attempt) or reaped (which ends it):
    when it matches, the row read is the row claimed, and needs no second read.
    """
    op = Operation.objects.filter(pk=op_id, status=Operation.Status.PENDING).first()
    if op is None:
        return None
    now = timezone.now()
    deadline = now + timedelta(seconds=get_kind(op.kind).deadline_seconds)
    claimed = Operation.objects.filter(pk=op_id, status=Operation.Status.PENDING, attempts=op.attempts).update(
        status=Operation.Status.RUNNING, started=now, deadline=deadline, attempts=op.attempts + 1
    )
    if not claimed:
        return None
    op.status, op.started, op.deadline, op.attempts = Operation.Status.RUNNING, now, deadline, op.attempts + 1
    operation_publish(op)
    return op


class Progress:
    """Handed to a handler: `progress(40, "Copying disk")` records and pushes where it stands.

    A report within PUSH_INTERVAL of the last push is kept on the operation in memory only: the next
    report that is pushed, or the outcome, writes it (its log line included). The row is written when
    browsers are told, so a copy loop reporting every block costs no commit per block.
    """

    def __init__(self, op: Operation) -> None:
        self.op = op
        self._pushed_at: float | None = None

    def __call__(self, percent: int | None = None, message: str = "") -> None:
        op = self.op
        if percent is not None:
            op.progress = max(0, min(100, int(percent)))
        if message and message != op.message:
            op.message = message[:255]
            op.log = [*op.log, {"at": timezone.now().isoformat(), "message": message}][-LOG_LIMIT:]
        now = time.monotonic()
        if self._pushed_at is not None and now - self._pushed_at < PUSH_INTERVAL and op.progress != 100:
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
            reason = "No worker picked this operation up before its deadline; is a worker running for its queue?"
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
