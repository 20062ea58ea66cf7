"""The WebSocket payloads about consoles: who is watching (sessions) and who may watch (shares).

The console proxy and the serial consumer publish a session's start and end with
`session_publish(session)`, after the row is written; pages that show who is watching (the VM
page's Console tab, /consoles/) fetch their live region again when one arrives.
"""

from __future__ import annotations

from typing import Any

from consoles.models import ConsoleSession
from kvmweb.realtime import groups
from kvmweb.realtime.publish import publish
from vms.messages import vm_groups
from vms.models import VirtualMachine


def session_payload(session: ConsoleSession) -> dict[str, Any]:
    """{"type": "console.session", "vm": uuid, "session": id, ...}: `live` false and `ended` set once it ended.

    The same shape as the VNC proxy's own (consoles/proxy/records.py), which builds it without a row.
    """
    return {
        "type": "console.session",
        "vm": str(session.vm.uuid),
        "session": session.pk,
        "kind": session.kind,
        "user": session.user.get_username() if session.user is not None else None,
        "view_only": session.view_only,
        "live": session.ended is None,
        "started": session.started.isoformat() if session.started else None,
        "ended": session.ended.isoformat() if session.ended else None,
        "end_reason": session.end_reason,
    }


def session_groups(vm: VirtualMachine) -> list[str]:
    """The VM's audience: administrators, its owner, and anyone watching the VM's own group."""
    return vm_groups(vm)


def session_publish(session: ConsoleSession) -> None:
    """Call after writing a session's start or its end: the message leaves once the row is committed."""
    publish(session_groups(session.vm), session_payload(session))


def share_payload(vm: VirtualMachine, username: str, *, shared: bool) -> dict[str, Any]:
    return {"type": "console.share", "vm": str(vm.uuid), "user": username, "shared": shared}


def share_publish(vm: VirtualMachine, user_id: int, username: str, *, shared: bool) -> None:
    """To the VM's audience and to the person it was shared with (their "Shared with me" list)."""
    publish([*vm_groups(vm), groups.user_group(user_id)], share_payload(vm, username, shared=shared))
