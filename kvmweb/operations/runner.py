"""Runs claimed operations: calls their handler and turns every way one can end into a recorded outcome."""

import logging
import time
from collections.abc import Sequence

from celery.exceptions import SoftTimeLimitExceeded

from kvmweb import virt
from kvmweb.errors import KvmwebError
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import OperationKind, get_kind
from kvmweb.operations.services import (
    PUSH_INTERVAL,
    Outcome,
    Progress,
    operation_requeue,
    operations_finish,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
TIMED_OUT = "The operation took longer than its time limit."


class RetryLater(Exception):
    """The operation went back to pending; the task should run again after `countdown` seconds."""

    def __init__(self, countdown: int) -> None:
        super().__init__(countdown)
        self.countdown = countdown


def run_claimed(op: Operation) -> None:
    operations_finish([(op, outcome_of(op))])


def run_claimed_batch(ops: Sequence[Operation]) -> None:
    """Run a batch's operations in turn. Their outcomes are recorded together, but none waits for the
    others longer than PUSH_INTERVAL: that is as long as a single operation's running push is held back."""
    kind = get_kind(ops[0].kind)
    if kind.preload is not None:
        kind.preload(ops)
    ended: list[tuple[Operation, Outcome]] = []
    first_end = 0.0
    timed_out: Outcome | None = None
    for op in ops:
        outcome = timed_out or outcome_of(op)  # once the task's time is up, the rest never run
        if outcome.error == TIMED_OUT:
            timed_out = outcome
        ended.append((op, outcome))
        first_end = first_end or time.monotonic()
        if time.monotonic() - first_end >= PUSH_INTERVAL:
            _finish_batch(kind, ended)
            ended, first_end = [], 0.0
    if ended:
        _finish_batch(kind, ended)


def _finish_batch(kind: OperationKind, ended: list[tuple[Operation, Outcome]]) -> None:
    if kind.settle is not None:
        try:
            kind.settle([op for op, _ in ended])
        except Exception:  # the rows it held are the events process's and the next reconcile's to correct
            log.exception("settling a batch of %s failed", kind.name)
    operations_finish(ended)


def outcome_of(op: Operation) -> Outcome:
    """Run the handler; raises RetryLater once the operation went back to pending for a retry."""
    kind = get_kind(op.kind)
    Status = Operation.Status
    try:
        result = kind.handler(op, Progress(op))
    except virt.VirtError as exc:
        if exc.transient and kind.retry_transient and op.attempts < MAX_ATTEMPTS:
            countdown = 2**op.attempts
            operation_requeue(op, message=f"{exc.message} Retrying in {countdown} s.")
            raise RetryLater(countdown) from exc
        return Outcome(Status.FAILED, error=exc.message, error_detail=exc.raw)
    except KvmwebError as exc:
        # The details become the result: a failure may suggest what to do next ({"suggest": "force-off"}).
        return Outcome(Status.FAILED, error=exc.message, result=exc.details)
    except SoftTimeLimitExceeded:
        return Outcome(Status.FAILED, error=TIMED_OUT)
    except Exception as exc:
        log.exception("operation %s crashed", op.pk)
        detail = f"{type(exc).__name__}: {exc}"
        return Outcome(Status.FAILED, error="kvmweb hit an internal error.", error_detail=detail)
    return Outcome(Status.SUCCEEDED, result=result or {})
