"""Changes to teams and their members: administrators only, each one audited.

Taking someone out of a team (or deleting it) can take console access away: their view of consoles
shared with the team, an instructor's view of the members' VMs. Every live console session that might
have depended on it is checked again once the change commits, and closed if access is gone.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils.text import slugify

from consoles.shares import sessions_recheck
from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record
from kvmweb.errors import Conflict, Invalid, KvmwebError, NotVisible
from kvmweb.targets import Target
from teams.models import NAME_MAX, Team, TeamMembership

ROLES = dict(TeamMembership.Role.choices)
RESERVED_SLUGS = {"add"}  # /teams/add/ is the create form's address
LOST_REASON = "Your access to this console through a team ended."


class MemberMissing(NotVisible):
    """The team is there, but that person is not in it."""


def team_target(team: Team) -> Target:
    return Target("team", str(team.pk), team.name)


def team_for_change(*, actor: Actor, slug: str, action: str) -> Team:
    """The team `actor` wants to change: NotVisible (audited) unless they see it."""
    user = actor.user if actor.user is not None else AnonymousUser()
    team = access.visible_teams(user).filter(slug=slug).first()
    if team is None:
        denied = NotVisible("No such team.")
        audit_record(
            actor=actor,
            action=action,
            target=Target("team", "", slug),
            outcome=AuditEvent.Outcome.DENIED,
            message=denied.message,
        )
        raise denied
    return team


def team_create(*, actor: Actor, name: str, description: str = "") -> Team:
    access.authorize(actor, "team.manage", target=Target("team", "", name))
    name = _checked_name(actor, "team.create", Target("team", "", name), name)
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, slug=slugify(name), description=description.strip())
    except IntegrityError:
        _fail(actor, "team.create", Target("team", "", name), _taken(name))
    _succeeded(actor, "team.create", team, f"Created team {name}.")
    return team


def team_update(*, actor: Actor, team: Team, name: str, description: str) -> Team:
    """Rename a team (its slug, so its address, follows the name) or change its description."""
    access.authorize(actor, "team.manage", target=team_target(team))
    old = team.name
    team.name = _checked_name(actor, "team.update", team_target(team), name, exclude=team.pk)
    team.slug, team.description = slugify(team.name), description.strip()
    try:
        with transaction.atomic():
            team.save(update_fields=["name", "slug", "description"])
    except IntegrityError:
        _fail(actor, "team.update", team_target(team), _taken(team.name))
    renamed = f"Renamed team {old} to {team.name}." if old != team.name else f"Updated team {team.name}."
    _succeeded(actor, "team.update", team, renamed)
    return team


def team_delete(*, actor: Actor, team: Team) -> None:
    access.authorize(actor, "team.manage", target=team_target(team))
    member_ids = list(team.memberships.values_list("user_id", flat=True))
    _succeeded(actor, "team.delete", team, f"Deleted team {team.name} ({len(member_ids)} members).")
    team.delete()
    sessions_recheck(where=Q(user_id__in=member_ids) | Q(vm__owner_id__in=member_ids), reason=LOST_REASON)


def member_add(*, actor: Actor, team: Team, username: str, role: str = TeamMembership.Role.MEMBER) -> TeamMembership:
    access.authorize(actor, "team.manage", target=team_target(team))
    user = _user(actor, "team.member.add", team, username)
    role = _role(actor, "team.member.add", team, role)
    try:
        with transaction.atomic():
            membership = TeamMembership.objects.create(team=team, user=user, role=role)
    except IntegrityError:
        _fail(actor, "team.member.add", team_target(team), Conflict(f"{username} is already in {team.name}."))
    _succeeded(actor, "team.member.add", team, f"Added {username} to {team.name} as {ROLES[role].lower()}.")
    return membership


def member_set_role(*, actor: Actor, team: Team, username: str, role: str) -> TeamMembership:
    """An instructor made a plain member loses the view of the other members' consoles at once."""
    access.authorize(actor, "team.manage", target=team_target(team))
    membership = _membership(actor, "team.member.role", team, username)
    membership.role = _role(actor, "team.member.role", team, role)
    membership.save(update_fields=["role"])
    _succeeded(actor, "team.member.role", team, f"Made {username} {ROLES[membership.role].lower()} of {team.name}.")
    sessions_recheck(where=Q(user_id=membership.user_id), reason=LOST_REASON)
    return membership


def member_remove(*, actor: Actor, team: Team, username: str) -> None:
    access.authorize(actor, "team.manage", target=team_target(team))
    membership = _membership(actor, "team.member.remove", team, username)
    user_id = membership.user_id
    membership.delete()
    _succeeded(actor, "team.member.remove", team, f"Removed {username} from {team.name}.")
    # Their view of the team's consoles, and the instructors' view of their VMs.
    sessions_recheck(where=Q(user_id=user_id) | Q(vm__owner_id=user_id), reason=LOST_REASON)


# --- helpers -------------------------------------------------------------------------------------------------------


def _checked_name(actor: Actor, action: str, target: Target, name: str, *, exclude: int | None = None) -> str:
    name = (name or "").strip()
    if not name or not slugify(name):
        _fail(actor, action, target, Invalid("Name the team.", details={"name": "Required: letters or digits."}))
    if len(name) > NAME_MAX:
        _fail(actor, action, target, Invalid("That name is too long.", details={"name": "At most 100 characters."}))
    if slugify(name) in RESERVED_SLUGS:
        _fail(
            actor, action, target, Invalid(f"{name!r} is reserved: pick another name.", details={"name": "Reserved."})
        )
    clash = Team.objects.filter(Q(name__iexact=name) | Q(slug=slugify(name)))
    if clash.exclude(pk=exclude or 0).exists():
        _fail(actor, action, target, _taken(name))
    return name


def _taken(name: str) -> Conflict:
    return Conflict(f"There is already a team called {name}.", details={"name": "Taken."})


def _user(actor: Actor, action: str, team: Team, username: str) -> Any:
    username = (username or "").strip()
    user = get_user_model().objects.filter(username=username, is_active=True).first() if username else None
    if user is None:
        message = f"There is no active user called {username!r}." if username else "Name the user to add."
        _fail(actor, action, team_target(team), Invalid(message, details={"user": "No such user."}))
    return user


def _role(actor: Actor, action: str, team: Team, role: str) -> str:
    if role not in ROLES:
        _fail(
            actor,
            action,
            team_target(team),
            Invalid(f"No such role: {role!r}.", details={"role": "member or instructor"}),
        )
    return role


def _membership(actor: Actor, action: str, team: Team, username: str) -> TeamMembership:
    membership = team.memberships.filter(user__username=username).first()
    if membership is None:
        _fail(actor, action, team_target(team), MemberMissing(f"{username} is not in {team.name}."))
    return membership


def _succeeded(actor: Actor, action: str, team: Team, message: str) -> None:
    audit_record(
        actor=actor, action=action, target=team_target(team), outcome=AuditEvent.Outcome.SUCCEEDED, message=message
    )


def _fail(actor: Actor, action: str, target: Target, exc: KvmwebError) -> NoReturn:
    audit_record(actor=actor, action=action, target=target, outcome=AuditEvent.Outcome.FAILED, message=exc.message)
    raise exc
