"""Celery interface to operations: tasks receive ids, fetch rows again and call services."""

from celery import shared_task
from celery.app.task import Task

from kvmweb.operations.runner import RetryLater, run_claimed, run_claimed_batch
from kvmweb.operations.services import operation_claim, operations_claim, operations_reap


@shared_task(name="operations.run", bind=True, max_retries=None)
def run_operation(self: Task, op_id: int, kind: str) -> None:
    op = operation_claim(op_id, kind)
    if op is None:
        return
    try:
        run_claimed(op)
    except RetryLater as retry:
        raise self.retry(countdown=retry.countdown) from None


@shared_task(name="operations.run_batch")
def run_operations(op_ids: list[int], kind: str) -> None:
    """Operations of one batching kind, from one bulk request (see `OperationKind.batch`)."""
    ops = operations_claim(op_ids, kind)
    if ops:
        run_claimed_batch(ops)


@shared_task(name="operations.reap")
def reap_operations() -> int:
    return operations_reap()
