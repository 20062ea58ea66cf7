"""What the console proxy writes: a ConsoleSession row and its audit event at connect, their end at close.

After each write, session_announce tells the VM's pages who is watching (a `console.session` message).
They run on the proxy's few database threads (consoles.proxy.server.DatabaseThreads), never on a
connection's own thread: a console can stay open for hours, and fifty of them need no fifty connections.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import close_old_connections, transaction
from django.utils import timezone

from consoles.models import ConsoleSession
from consoles.tokens import ConsoleGrant
from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record
from kvmweb.realtime.publish import publish
from kvmweb.targets import Target
from vms.messages import vm_groups

ACTION = "console.session"


class AccessGone(Exception):
    """The token is sound, but its holder may no longer open this console (or not with control)."""


@dataclass
class LiveSession:
    id: int
    audit_event_id: int
    vm: str
    groups: list[str]
    user: str
    view_only: bool
    started: Any  # datetime
    began: float  # monotonic, for the duration


def mode(view_only: bool) -> str:
    return "view-only" if view_only else "full control"


def session_open(*, grant: ConsoleGrant, ip: str | None) -> LiveSession:
    """Check the grant's holder still has access, then record the session (audit event accepted) and announce it."""
    close_old_connections()
    user = get_user_model().objects.filter(pk=grant.user, is_active=True).first()
    vm = access.console_vms(user).filter(uuid=grant.vm).first() if user is not None else None
    if user is None or vm is None or (not grant.view_only and not access.console_may_type(user, vm)):
        if user is not None:
            _refused(user, ip, Target("vm", grant.vm, vm.name if vm else ""), "Access to this console was removed.")
        raise AccessGone("Your access to this console has changed; open it again.")
    with transaction.atomic():
        event = audit_record(
            actor=Actor(user=user, ip=ip),
            action=ACTION,
            target=Target("vm", str(vm.uuid), vm.name),
            outcome=AuditEvent.Outcome.ACCEPTED,
            message=mode(grant.view_only),
        )
        session = ConsoleSession.objects.create(
            vm=vm, user=user, kind=grant.kind, view_only=grant.view_only, client_ip=ip, audit_event=event
        )
        live = LiveSession(
            id=session.pk,
            audit_event_id=event.pk,
            vm=str(vm.uuid),
            groups=vm_groups(vm),
            user=user.get_username(),
            view_only=grant.view_only,
            started=session.started,
            began=time.monotonic(),
        )
    return live


def session_announce(live: LiveSession, *, ended: Any = None, reason: str = "") -> None:
    """Tell the VM's pages who is watching: run after the write, off the connection's path (a push waits for Redis)."""
    publish(live.groups, session_payload(live, ended=ended, reason=reason))


def session_refused(*, grant: ConsoleGrant, ip: str | None, message: str) -> None:
    """A sound token refused (already used): worth a line in the audit log, with whose it was."""
    close_old_connections()
    user = get_user_model().objects.filter(pk=grant.user).first()
    if user is not None:
        _refused(user, ip, Target("vm", grant.vm, ""), message)


def session_close(live: LiveSession, *, bytes_to_client: int, bytes_from_client: int, reason: str) -> Any:
    """Record the end: bytes each way, why it ended, and the audit event's outcome; returns the end time."""
    close_old_connections()
    ended = timezone.now()
    seconds = time.monotonic() - live.began
    with transaction.atomic():
        ConsoleSession.objects.filter(pk=live.id).update(
            ended=ended,
            bytes_to_client=bytes_to_client,
            bytes_from_client=bytes_from_client,
            end_reason=reason[:255],
        )
        AuditEvent.objects.filter(pk=live.audit_event_id).update(
            outcome=AuditEvent.Outcome.SUCCEEDED,
            message=(
                f"{mode(live.view_only)}, {seconds:.1f} s, {bytes_to_client} bytes to the browser, "
                f"{bytes_from_client} from it; {reason}"
            ),
        )
    return ended


def sessions_end_stale(*, reason: str) -> int:
    """At start-up: VNC sessions still live in the database belonged to a proxy that died without closing them."""
    stale = ConsoleSession.objects.filter(kind=ConsoleSession.Kind.VNC, ended__isnull=True)
    with transaction.atomic():
        events = list(stale.exclude(audit_event=None).values_list("audit_event_id", flat=True))
        AuditEvent.objects.filter(pk__in=events, outcome=AuditEvent.Outcome.ACCEPTED).update(
            outcome=AuditEvent.Outcome.FAILED, message=reason
        )
        return stale.update(ended=timezone.now(), end_reason=reason[:255])


def session_payload(live: LiveSession, *, ended: Any, reason: str) -> dict[str, Any]:
    return {
        "type": "console.session",
        "vm": live.vm,
        "session": live.id,
        "kind": "vnc",
        "user": live.user,
        "view_only": live.view_only,
        "live": ended is None,
        "started": live.started.isoformat(),
        "ended": ended.isoformat() if ended is not None else None,
        "end_reason": reason,
    }


def _refused(user: Any, ip: str | None, target: Target, message: str) -> None:
    audit_record(
        actor=Actor(user=user, ip=ip),
        action=ACTION,
        target=target,
        outcome=AuditEvent.Outcome.DENIED,
        message=message,
    )
