"""Runs one claimed operation: calls its handler and turns every way it can end into a recorded outcome."""

import logging

from celery.exceptions import SoftTimeLimitExceeded

from kvmweb import virt
from kvmweb.errors import KvmwebError
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import get_kind
from kvmweb.operations.services import Progress, operation_finish, operation_requeue

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


class RetryLater(Exception):
    """The operation went back to pending; the task should run again after `countdown` seconds."""

    def __init__(self, countdown: int) -> None:
        super().__init__(countdown)
        self.countdown = countdown


def run_claimed(op: Operation) -> None:
    kind = get_kind(op.kind)
    Status = Operation.Status
    try:
        result = kind.handler(op, Progress(op))
    except virt.VirtError as exc:
        if exc.transient and kind.retry_transient and op.attempts < MAX_ATTEMPTS:
            countdown = 2**op.attempts
            operation_requeue(op, message=f"{exc.message} Retrying in {countdown} s.")
            raise RetryLater(countdown) from exc
        operation_finish(op, status=Status.FAILED, error=exc.message, error_detail=exc.raw)
    except KvmwebError as exc:
        # The details become the result: a failure may suggest what to do next ({"suggest": "force-off"}).
        operation_finish(op, status=Status.FAILED, error=exc.message, result=exc.details)
    except SoftTimeLimitExceeded:
        operation_finish(op, status=Status.FAILED, error="The operation took longer than its time limit.")
    except Exception as exc:
        log.exception("operation %s crashed", op.pk)
        operation_finish(
            op, status=Status.FAILED, error="kvmweb hit an internal error.", error_detail=f"{type(exc).__name__}: {exc}"
        )
    else:
        operation_finish(op, status=Status.SUCCEEDED, result=result or {})
