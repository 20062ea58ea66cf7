"""Opening a console: the access check, the target, and a single-use token for the proxy."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from consoles import tokens
from consoles.targets import vnc_target
from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record
from kvmweb.errors import NotVisible
from kvmweb.targets import Target
from vms.models import VirtualMachine


@dataclass(frozen=True)
class ConsoleTicket:
    token: str
    websocket_url: str
    expires: float
    view_only: bool


def console_vm(*, actor: Actor, uuid: UUID | str) -> VirtualMachine:
    """The VM whose console `actor` may open; NotVisible (audited) otherwise."""
    user = actor.user if actor.user is not None else AnonymousUser()
    vm = access.console_vms(user).select_related("host").filter(uuid=uuid).first()
    if vm is None:
        unseen = Target("vm", str(uuid), "")
        audit_record(
            actor=actor, action="console.open", target=unseen, outcome=AuditEvent.Outcome.DENIED, message="No such VM."
        )
        raise NotVisible("No such VM.")
    return vm


def console_open(*, actor: Actor, vm: VirtualMachine, view_only: bool = False) -> ConsoleTicket:
    """A token for the VNC proxy. People the console is shared with always get a view-only one."""
    user = actor.user
    assert user is not None and user.is_authenticated
    view_only = view_only or not access.console_may_type(user, vm)
    grant = tokens.grant_for(user=user.pk, vm=str(vm.uuid), kind="vnc", target=vnc_target(vm), view_only=view_only)
    token = tokens.sign(grant)
    return ConsoleTicket(token=token, websocket_url=websocket_url(token), expires=grant.expires, view_only=view_only)


def websocket_url(token: str) -> str:
    """Relative to the site: the browser adds its own scheme and host (ws:// or wss://)."""
    return f"{settings.KVMWEB_CONSOLE_PATH}?token={token}"
