"""Operations in tests: who asks, and running a queued one in-process through the real claim and runner."""

from typing import Any

from kvmweb.actors import Actor
from kvmweb.operations import services as operation_services
from kvmweb.operations.models import Operation
from kvmweb.operations.runner import run_claimed


def actor_of(user: Any) -> Actor:
    return Actor(user=user, ip="192.0.2.9")


def run(op: Operation) -> Operation:
    """Claim and run `op` here, as a worker would, and return it as it ended."""
    claimed = operation_services.operation_claim(op.pk, op.kind)
    assert claimed is not None
    run_claimed(claimed)
    op.refresh_from_db()
    return op
