from collections.abc import Sequence

from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.targets import Target


def audit_record(
    *,
    actor: Actor,
    action: str,
    target: Target | None,
    outcome: str,
    message: str = "",
    operation_id: int | None = None,
) -> AuditEvent:
    event = audit_event(
        actor=actor, action=action, target=target, outcome=outcome, message=message, operation_id=operation_id
    )
    event.save(force_insert=True)
    return event


def audit_event(
    *,
    actor: Actor,
    action: str,
    target: Target | None,
    outcome: str,
    message: str = "",
    operation_id: int | None = None,
) -> AuditEvent:
    """An event not yet saved, for callers that write many with one INSERT."""
    user = actor.user if actor.user is not None and actor.user.is_authenticated else None
    return AuditEvent(
        actor_id=user.pk if user else None,
        actor_name=actor.name,
        ip=actor.ip,
        action=action,
        target_type=target.type if target else "",
        target_id=target.id if target else "",
        target_label=target.label if target else "",
        outcome=outcome,
        message=message[:2000],
        operation_id=operation_id,
    )


def audit_close_for_operation(*, operation_ids: Sequence[int], outcome: str, message: str) -> None:
    """Accepted requests' events take the outcome of the operations they started (one outcome for all)."""
    AuditEvent.objects.filter(operation_id__in=operation_ids, outcome=AuditEvent.Outcome.ACCEPTED).update(
        outcome=outcome, message=message[:2000]
    )
