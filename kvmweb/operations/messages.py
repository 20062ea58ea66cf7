"""The WebSocket payload for an operation, and the groups that may see it."""

from typing import Any

from kvmweb.operations.models import Operation
from kvmweb.realtime import groups


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def operation_payload(op: Operation) -> dict[str, Any]:
    return {
        "id": op.pk,
        "kind": op.kind,
        "kind_label": op.kind_label,
        "target": op.target.as_dict(),
        "status": op.status,
        "progress": op.progress,
        "message": op.message,
        "error": op.error,
        # What a failure suggests doing next (a shutdown that timed out: "force-off"), for the drawer's button;
        # the rest of the result stays on the operation's page.
        "suggest": op.result.get("suggest"),
        "created": _iso(op.created),
        "started": _iso(op.started),
        "finished": _iso(op.finished),
    }


def operation_groups(op: Operation) -> list[str]:
    audience = [groups.ADMINS, groups.target_group(op.target_type, op.target_id)]
    if op.requested_by_id is not None:
        audience.append(groups.user_group(op.requested_by_id))
    return audience
