"""View-only console sharing for labs, who is watching a console now, and ending console sessions.

Sessions are written by the console proxy and the serial consumer; here they are only read, and
closing one is asked of every proxy process through `consoles.sessions.sessions_close`, once the
change that takes the access away has committed (a rolled-back revoke must not disconnect anyone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn
from uuid import UUID

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import Count, Q

from consoles.messages import share_payload, share_publish
from consoles.models import ConsoleSession, ConsoleShare
from consoles.sessions import sessions_close
from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record
from kvmweb.errors import Conflict, Forbidden, Invalid, KvmwebError, NotVisible
from kvmweb.realtime import groups
from kvmweb.realtime.publish import publish
from kvmweb.targets import Target
from teams.models import Team
from vms.messages import vm_groups
from vms.models import VirtualMachine

User = AbstractBaseUser | AnonymousUser

# The ended sessions /consoles/ lists under the live ones.
RECENT_ENDED = 50


class ShareMissing(NotVisible):
    """The VM is there, but its console is not shared with that user or team."""


# --- lookups with the access check ---------------------------------------------------------------------------------


def share_vm(*, actor: Actor, uuid: UUID | str, action: str = "console.share") -> VirtualMachine:
    """The VM whose console sharing `actor` manages: NotVisible (404) for those who can't open its
    console, Forbidden (403) for those it is shared with (they watch; they don't share on). Audited."""
    user = _user(actor)
    vm = access.console_vms(user).select_related("host", "owner").filter(uuid=uuid).first()
    if vm is None:
        _deny(actor, action, Target("vm", str(uuid), ""), NotVisible("No such VM."))
    _authorize(actor, vm, action)
    return vm


def session_get(*, actor: Actor, session_id: int) -> ConsoleSession:
    """A console session, for an administrator to end; Forbidden (audited) for anyone else."""
    access.authorize(actor, "console.end", target=Target("console", str(session_id), f"console session #{session_id}"))
    session = ConsoleSession.objects.select_related("vm", "user").filter(pk=session_id).first()
    if session is None:
        raise NotVisible("No such console session.")
    return session


# --- writes --------------------------------------------------------------------------------------------------------


def share_add(*, actor: Actor, vm: VirtualMachine, username: str) -> ConsoleShare:
    """Let `username` watch `vm`'s console, view-only: the VM's owner or an administrator shares."""
    _authorize(actor, vm, "console.share")
    username = (username or "").strip()
    if not username:
        _fail(
            actor,
            vm,
            "console.share",
            Invalid("Name the user to share the console with.", details={"user": "Required."}),
        )
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        message = f"There is no active user called {username!r}."
        _fail(actor, vm, "console.share", Invalid(message, details={"user": "No such user."}))
    if vm.owner_id == user.pk:
        message = f"{username} owns {vm.name}: they already have full access to its console."
        _fail(actor, vm, "console.share", Invalid(message, details={"user": "The owner."}))
    if access.is_admin(user):
        message = f"{username} is an administrator: they already have full access to every console."
        _fail(actor, vm, "console.share", Invalid(message, details={"user": "An administrator."}))
    duplicate = Conflict(f"{vm.name}'s console is already shared with {username}.", details={"user": "Already shared."})
    if ConsoleShare.objects.filter(vm=vm, user=user).exists():
        _fail(actor, vm, "console.share", duplicate)
    creator = actor.user.pk if actor.user is not None and actor.user.is_authenticated else None
    try:
        with transaction.atomic():
            share = ConsoleShare.objects.create(vm=vm, user=user, created_by_id=creator)
    except IntegrityError:  # shared by someone else in the same instant
        _fail(actor, vm, "console.share", duplicate)
    audit_record(
        actor=actor,
        action="console.share",
        target=vm.as_target(),
        outcome=AuditEvent.Outcome.SUCCEEDED,
        message=f"Shared the console view-only with {username}.",
    )
    share_publish(vm, user.pk, username, shared=True)
    return share


def share_revoke(*, actor: Actor, vm: VirtualMachine, username: str) -> None:
    """Stop sharing `vm`'s console with `username`, and disconnect them from it once that commits."""
    _authorize(actor, vm, "console.unshare")
    user = get_user_model().objects.filter(username=username, console_shares__vm=vm).first()
    if user is None:
        _fail(actor, vm, "console.unshare", ShareMissing(f"{vm.name}'s console is not shared with {username}."))
    ConsoleShare.objects.filter(vm=vm, user=user).delete()
    audit_record(
        actor=actor,
        action="console.unshare",
        target=vm.as_target(),
        outcome=AuditEvent.Outcome.SUCCEEDED,
        message=f"Stopped sharing the console with {username}.",
    )
    share_publish(vm, user.pk, username, shared=False)
    sessions_close_lost_access(vm=vm, user_id=user.pk, reason=f"{vm.name}'s console is no longer shared with you.")


def share_add_team(*, actor: Actor, vm: VirtualMachine, slug: str) -> ConsoleShare:
    """Let every member of a team watch `vm`'s console, view-only. Administrators name any team; the
    owner or an instructor, one they are in."""
    _authorize(actor, vm, "console.share")
    team = access.shareable_teams(_user(actor)).filter(slug=(slug or "").strip()).first()
    if team is None:
        message = f"There is no team called {slug!r} that you can share with." if slug else "Name the team."
        _fail(actor, vm, "console.share", Invalid(message, details={"team": "No such team."}))
    duplicate = Conflict(f"{vm.name}'s console is already shared with team {team.name}.", details={"team": "Shared."})
    creator = actor.user.pk if actor.user is not None and actor.user.is_authenticated else None
    try:
        with transaction.atomic():
            share = ConsoleShare.objects.create(vm=vm, team=team, created_by_id=creator)
    except IntegrityError:  # already, or by someone else in the same instant
        _fail(actor, vm, "console.share", duplicate)
    _succeeded(actor, vm, "console.share", f"Shared the console view-only with team {team.name}.")
    _team_publish(vm, team, shared=True)
    return share


def share_revoke_team(*, actor: Actor, vm: VirtualMachine, slug: str) -> None:
    """Stop sharing with a team; once that commits, members who can no longer watch are disconnected."""
    _authorize(actor, vm, "console.unshare")
    team = Team.objects.filter(slug=slug, console_shares__vm=vm).first()
    if team is None:
        _fail(actor, vm, "console.unshare", ShareMissing(f"{vm.name}'s console is not shared with team {slug}."))
    member_ids = list(team.memberships.values_list("user_id", flat=True))
    ConsoleShare.objects.filter(vm=vm, team=team).delete()
    _succeeded(actor, vm, "console.unshare", f"Stopped sharing the console with team {team.name}.")
    _team_publish(vm, team, shared=False)
    reason = f"{vm.name}'s console is no longer shared with team {team.name}."
    sessions_recheck(where=Q(vm_id=vm.pk, user_id__in=member_ids), reason=reason)


def session_end(*, actor: Actor, session: ConsoleSession) -> None:
    """An administrator ends a live console session: every proxy is asked to drop it."""
    target = session.vm.as_target()
    access.authorize(actor, "console.end", target=target)
    if session.ended is not None:
        _fail(actor, session.vm, "console.end", Conflict(f"Console session #{session.pk} has already ended."))
    who = session.user.get_username() if session.user is not None else "a deleted user"
    mode = "view-only" if session.view_only else "full-control"
    audit_record(
        actor=actor,
        action="console.end",
        target=target,
        outcome=AuditEvent.Outcome.SUCCEEDED,
        message=f"Ended {who}'s {mode} {session.get_kind_display()} console session #{session.pk}.",
    )
    ids = [session.pk]
    transaction.on_commit(
        lambda: sessions_close(ids, reason="An administrator ended this console session."), robust=True
    )


def sessions_close_lost_access(*, vm: VirtualMachine, user_id: int, reason: str) -> None:
    """Once the transaction commits, close `user_id`'s live sessions on `vm` that their access no longer allows.

    Called when a share is revoked and when a VM changes owner.
    """
    sessions_recheck(where=Q(vm_id=vm.pk, user_id=user_id), reason=reason)


def sessions_recheck(*, where: Q, reason: str) -> None:
    """Once the transaction commits, check the access of every live session matching `where` again,
    and close those it no longer allows: whoever may still type keeps every session, whoever may
    still watch keeps the view-only ones. Asking again per session, rather than guessing from the
    change, keeps access through another share, team or role."""
    transaction.on_commit(lambda: _close_lost(where, reason), robust=True)


def _close_lost(where: Q, reason: str) -> list[int]:
    live = ConsoleSession.objects.filter(where, ended__isnull=True).select_related("vm", "user")
    verdicts: dict[tuple[int, int | None], tuple[bool, bool]] = {}
    ids = []
    for session in live:
        key = (session.vm_id, session.user_id)
        if key not in verdicts:
            verdicts[key] = _may_type_and_watch(session)
        may_type, may_watch = verdicts[key]
        if not may_type and not (may_watch and session.view_only):
            ids.append(session.pk)
    sessions_close(ids, reason=reason)
    return ids


def _may_type_and_watch(session: ConsoleSession) -> tuple[bool, bool]:
    user = session.user
    if user is None or not user.is_active:
        return False, False
    if access.console_may_type(user, session.vm):
        return True, True
    return False, access.console_vms(user).filter(pk=session.vm_id).exists()


# --- reads ---------------------------------------------------------------------------------------------------------


def shares_of(vm: VirtualMachine) -> list[ConsoleShare]:
    """People and teams (with `member_count`) the console is shared with, oldest first."""
    return list(
        ConsoleShare.objects.filter(vm=vm)
        .select_related("user", "team", "created_by")
        .annotate(member_count=Count("team__memberships"))
        .order_by("created", "pk")
    )


def live_sessions(vm: VirtualMachine) -> list[ConsoleSession]:
    """Who is on `vm`'s console now, first come first."""
    return list(
        ConsoleSession.objects.filter(vm=vm, ended__isnull=True).select_related("user").order_by("started", "pk")
    )


def all_live_sessions() -> list[ConsoleSession]:
    return list(
        ConsoleSession.objects.filter(ended__isnull=True).select_related("vm", "vm__host", "user").order_by("-started")
    )


def recent_ended_sessions(limit: int = RECENT_ENDED) -> list[ConsoleSession]:
    return list(
        ConsoleSession.objects.filter(ended__isnull=False)
        .select_related("vm", "vm__host", "user")
        .order_by("-ended", "-pk")[:limit]
    )


def shared_with(user: User) -> list[ConsoleShare]:
    """Consoles others shared with `user` or a team they are in, one per VM: they watch these without
    seeing the VMs' pages."""
    if not user.is_authenticated:
        return []
    rows = (
        ConsoleShare.objects.filter(Q(user_id=user.pk) | Q(team__memberships__user_id=user.pk))
        .exclude(vm__state=VirtualMachine.State.GONE)
        .select_related("vm", "vm__host", "team", "created_by")
        .order_by("vm__name", "pk")
    )
    first: dict[int, ConsoleShare] = {}
    for share in rows:
        first.setdefault(share.vm_id, share)
    return list(first.values())


def share_candidates(vm: VirtualMachine) -> list[Any]:
    """Active users the console could be shared with: not the owner, not administrators, not already."""
    return list(
        get_user_model()
        .objects.filter(is_active=True, is_staff=False, is_superuser=False)
        .exclude(Q(pk=vm.owner_id) | Q(console_shares__vm=vm))
        .order_by("username")
    )


def team_candidates(user: User, vm: VirtualMachine) -> list[Team]:
    """Teams `user` may share the console with that it isn't shared with yet."""
    return list(access.shareable_teams(user).exclude(console_shares__vm=vm).order_by("name"))


@dataclass(frozen=True)
class TeamConsole:
    vm: VirtualMachine
    share: ConsoleShare | None  # None: a member's VM not shared with the team (instructors see these)
    may_share: bool


def team_consoles(user: User, team: Team) -> list[TeamConsole]:
    """The team page's consoles: VMs shared with the team, and for its instructors and administrators
    also the members' own VMs, which they may watch and share with the team."""
    shared = {s.vm_id: s for s in ConsoleShare.objects.filter(team=team).select_related("vm", "vm__owner")}
    instructs = access.is_admin(user) or access.instructs(user, team)
    vms = [share.vm for share in shared.values()]
    if instructs:
        owned = VirtualMachine.objects.filter(owner__team_memberships__team=team).exclude(pk__in=shared)
        vms += list(owned.select_related("owner"))
    vms = sorted((vm for vm in vms if vm.state != VirtualMachine.State.GONE), key=lambda vm: vm.name)
    return [TeamConsole(vm, shared.get(vm.pk), instructs and access.console_may_share(user, vm)) for vm in vms]


@dataclass(frozen=True)
class SharePanel:
    may_share: bool
    may_end: bool
    shares: list[ConsoleShare]
    live: list[ConsoleSession]
    candidates: list[Any]
    teams: list[Team]


def share_panel(user: User, vm: VirtualMachine) -> SharePanel:
    """What the VM page's sharing card shows to `user` (who sees the VM page, so owns or administers it)."""
    may_share = access.console_may_share(user, vm)
    return SharePanel(
        may_share=may_share,
        may_end=access.is_admin(user),
        shares=shares_of(vm) if may_share else [],
        live=live_sessions(vm) if may_share else [],
        candidates=share_candidates(vm) if may_share else [],
        teams=team_candidates(user, vm) if may_share else [],
    )


# --- helpers -------------------------------------------------------------------------------------------------------


def _user(actor: Actor) -> User:
    return actor.user if actor.user is not None else AnonymousUser()


def _authorize(actor: Actor, vm: VirtualMachine, action: str) -> None:
    try:
        access.require_console_share(_user(actor), vm)
    except (Forbidden, NotVisible) as exc:
        target = vm.as_target() if not isinstance(exc, NotVisible) else Target("vm", str(vm.uuid), "")
        _deny(actor, action, target, exc)


def _succeeded(actor: Actor, vm: VirtualMachine, action: str, message: str) -> None:
    audit_record(
        actor=actor, action=action, target=vm.as_target(), outcome=AuditEvent.Outcome.SUCCEEDED, message=message
    )


def _team_publish(vm: VirtualMachine, team: Team, *, shared: bool) -> None:
    """To the VM's audience and to every member's "Shared with me" list: one message, `user` null."""
    member_groups = [groups.user_group(pk) for pk in team.memberships.values_list("user_id", flat=True)]
    publish([*vm_groups(vm), *member_groups], {**share_payload(vm, "", shared=shared), "user": None, "team": team.slug})


def _deny(actor: Actor, action: str, target: Target, exc: KvmwebError) -> NoReturn:
    audit_record(actor=actor, action=action, target=target, outcome=AuditEvent.Outcome.DENIED, message=exc.message)
    raise exc


def _fail(actor: Actor, vm: VirtualMachine, action: str, exc: KvmwebError) -> NoReturn:
    audit_record(
        actor=actor, action=action, target=vm.as_target(), outcome=AuditEvent.Outcome.FAILED, message=exc.message
    )
    raise exc
