"""The one access-check chokepoint: every view, API endpoint and consumer asks here.

Objects a user may not see are reported as missing (404), so their existence doesn't leak;
objects they may see but not change are refused (403).
"""

from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from kvmweb.errors import Forbidden, NotVisible
from kvmweb.realtime import groups

if TYPE_CHECKING:
    from hosts.models import Host
    from kvmweb.actors import Actor
    from kvmweb.audit.models import AuditEvent
    from kvmweb.operations.models import Operation
    from kvmweb.targets import Target
    from networks.models import Network
    from storage.models import StoragePool
    from teams.models import Team
    from vms.models import VirtualMachine

User = AbstractBaseUser | AnonymousUser

# Actions only administrators may take, whatever the object.
# "vm.create.kernel" names a file on the host for QEMU to read, "vm.xml" writes raw domain XML (a
# disk on any host device, <hostdev>, <qemu:commandline>: root on the host in effect), and
# "vm.reassign" moves a VM between owners: all are administrators' choices.
ADMIN_ACTIONS = frozenset(
    {
        "host.add",
        "host.change",
        "host.delete",
        "host.refresh",
        "audit.view",
        "vm.create.kernel",
        "vm.reassign",
        "vm.xml",
        "console.sessions",
        "console.end",
        "pool.manage",  # pools: define, build, start, stop, refresh, autostart, undefine
        "storage.manage",  # volumes: create, resize, clone/convert, wipe, delete, upload, download
        "network.manage",  # networks: define, start, stop, autostart, undefine, edit the XML
        "team.manage",  # teams: create, rename, delete, add and remove members, set roles
    }
)
# Actions on a VM that administrators and the VM's owner may take.
OWNER_ACTIONS = frozenset({"vm.act"})


def is_admin(user: User) -> bool:
    return bool(user.is_authenticated and (getattr(user, "is_staff", False) or getattr(user, "is_superuser", False)))


def visible_hosts(user: User) -> "QuerySet[Host]":
    from hosts.models import Host

    if is_admin(user):
        return Host.objects.all()
    if not user.is_authenticated:
        return Host.objects.none()
    return Host.objects.filter(members__pk=user.pk)


def visible_vms(user: User) -> "QuerySet[VirtualMachine]":
    """Administrators see every VM; a user sees the VMs they own."""
    from vms.models import VirtualMachine

    if is_admin(user):
        return VirtualMachine.objects.all()
    if not user.is_authenticated:
        return VirtualMachine.objects.none()
    return VirtualMachine.objects.filter(owner_id=user.pk)


def console_vms(user: User) -> "QuerySet[VirtualMachine]":
    """VMs whose console `user` may open: those they see, plus (view-only) those shared with them or
    with a team they are in, and those owned by a member of a team they instruct."""
    from vms.models import VirtualMachine

    if is_admin(user):
        return VirtualMachine.objects.all()
    if not user.is_authenticated:
        return VirtualMachine.objects.none()
    return VirtualMachine.objects.filter(
        Q(owner_id=user.pk)
        | Q(console_shares__user_id=user.pk)
        | Q(console_shares__team_id__in=_team_ids(user))
        | Q(owner__team_memberships__team_id__in=_team_ids(user, instructor=True))
    ).distinct()


def console_may_type(user: User, vm: "VirtualMachine") -> bool:
    """Owners and administrators control the console; people it is shared with and instructors only watch."""
    return _owns_or_admin(user, vm)


def console_may_share(user: User, vm: "VirtualMachine") -> bool:
    """Who shares a VM's console view-only: its owner, an instructor of a team the owner is in, or an administrator."""
    return user.is_authenticated and (_owns_or_admin(user, vm) or instructs_owner(user, vm))


def instructs_owner(user: User, vm: "VirtualMachine") -> bool:
    if not user.is_authenticated or vm.owner_id is None:
        return False
    from teams.models import TeamMembership

    return TeamMembership.objects.filter(team_id__in=_team_ids(user, instructor=True), user_id=vm.owner_id).exists()


def instructs(user: User, team: "Team") -> bool:
    return user.is_authenticated and _team_ids(user, instructor=True).filter(team_id=team.pk).exists()


def require_console_share(user: User, vm: "VirtualMachine") -> None:
    """NotVisible for those who can't open the console at all; Forbidden for those who may only watch it."""
    if not user.is_authenticated:
        raise Forbidden("Log in first.")
    if not console_vms(user).filter(pk=vm.pk).exists():
        raise NotVisible("Not found.")
    if not console_may_share(user, vm):
        raise Forbidden(
            "Only the VM's owner, an instructor of the owner's team, or an administrator can share its console."
        )


def visible_teams(user: User) -> "QuerySet[Team]":
    """Administrators see every team; a user sees the teams they are in."""
    from teams.models import Team

    if is_admin(user):
        return Team.objects.all()
    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user_id=user.pk).distinct()


def shareable_teams(user: User) -> "QuerySet[Team]":
    """Teams `user` may share a console with: any, for administrators; otherwise the teams they are in."""
    return visible_teams(user)


def _team_ids(user: User, *, instructor: bool = False) -> "QuerySet[Any]":
    from teams.models import TeamMembership

    memberships = TeamMembership.objects.filter(Q(user_id=user.pk))
    if instructor:
        memberships = memberships.filter(role=TeamMembership.Role.INSTRUCTOR)
    return memberships.values("team_id")


def visible_networks(user: User) -> "QuerySet[Network]":
    from networks.models import Network

    return Network.objects.filter(host__in=visible_hosts(user))


def visible_pools(user: User) -> "QuerySet[StoragePool]":
    from storage.models import StoragePool

    return StoragePool.objects.filter(host__in=visible_hosts(user))


def visible_operations(user: User) -> "QuerySet[Operation]":
    from kvmweb.operations.models import Operation

    if is_admin(user):
        return Operation.objects.all()
    if not user.is_authenticated:
        return Operation.objects.none()
    return Operation.objects.filter(requested_by_id=user.pk)


def visible_audit_events(user: User) -> "QuerySet[AuditEvent]":
    from kvmweb.audit.models import AuditEvent

    require(user, "audit.view")
    return AuditEvent.objects.all()


def can_see(user: User, obj: Any) -> bool:
    from hosts.models import Host
    from kvmweb.operations.models import Operation
    from vms.models import VirtualMachine

    visible: QuerySet[Any]
    if isinstance(obj, Host):
        visible = visible_hosts(user)
    elif isinstance(obj, VirtualMachine):
        visible = visible_vms(user)
    elif isinstance(obj, Operation):
        visible = visible_operations(user)
    else:
        raise TypeError(f"no visibility rule for {type(obj).__name__}")
    # Administrators see every row: a bulk action on a hundred VMs need not ask a hundred times.
    return is_admin(user) or visible.filter(pk=obj.pk).exists()


def require(user: User, action: str, obj: Any = None) -> None:
    """Raise NotVisible or Forbidden unless `user` may take `action` (on `obj`)."""
    if not user.is_authenticated:
        raise Forbidden("Log in first.")
    if obj is not None and not can_see(user, obj):
        raise NotVisible("Not found.")
    if action in ADMIN_ACTIONS and not is_admin(user):
        raise Forbidden("Only administrators can do that.")
    if action in OWNER_ACTIONS and not _owns_or_admin(user, obj):
        raise Forbidden("Only the VM's owner or an administrator can do that.")


def _owns_or_admin(user: User, obj: Any) -> bool:
    # An anonymous user's pk is None, like an unowned VM's owner_id: ownership needs a signed-in user.
    if not user.is_authenticated:
        return False
    return is_admin(user) or (obj is not None and getattr(obj, "owner_id", None) == user.pk)


def can_act(user: User, vm: "VirtualMachine | None" = None) -> bool:
    """Whether `user` may take power actions on `vm` (on any VM they see, when None): for templates."""
    if not user.is_authenticated:
        return False
    if vm is None:
        return True  # everyone who sees a VM owns it or administers it; bulk checks each one again
    return _owns_or_admin(user, vm)


def event_groups(user: User) -> list[str]:
    """The realtime groups a user's WebSocket joins: only what they may see."""
    if not user.is_authenticated:
        return []
    if is_admin(user):
        return [groups.ADMINS]
    host_ids = visible_hosts(user).values_list("pk", flat=True)
    return [groups.user_group(user.pk), *(groups.host_group(pk) for pk in host_ids)]


def authorize(actor: "Actor", action: str, obj: Any = None, *, target: "Target | None" = None) -> None:
    """`require` for a state change: a refusal is also written to the audit log."""
    from kvmweb.audit.models import AuditEvent
    from kvmweb.audit.services import audit_record

    user = actor.user if actor.user is not None else AnonymousUser()
    try:
        require(user, action, obj)
    except (Forbidden, NotVisible) as exc:
        audit_record(actor=actor, action=action, target=target, outcome=AuditEvent.Outcome.DENIED, message=exc.message)
        raise
