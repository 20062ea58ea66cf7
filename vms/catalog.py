"""Templates: shut-off VMs whose disks new VMs are made from, and the catalog that lists them."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from consoles.shares import sessions_close_lost_access
from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record
from kvmweb.errors import Conflict, Invalid
from kvmweb.realtime import groups
from kvmweb.realtime.publish import publish
from kvmweb.virt.xml import domain_devices
from storage.models import Volume
from vms.messages import vms_publish
from vms.models import VirtualMachine

User = AbstractBaseUser | AnonymousUser


def visible_templates(user: User | None) -> QuerySet[VirtualMachine]:
    """Templates on the hosts `user` may use: anyone who may create VMs there may start from one."""
    if user is None:
        return VirtualMachine.objects.none()
    hosts = access.visible_hosts(user)
    return (
        VirtualMachine.objects.filter(is_template=True, host__in=hosts)
        .exclude(state=VirtualMachine.State.GONE)
        .select_related("host", "owner")
    )


def template_disks(vm: VirtualMachine) -> list[dict[str, Any]]:
    """The VM's disk images (not CD-ROMs) as host paths, from the definition the database keeps."""
    disks = []
    for disk in domain_devices(vm.xml).disks if vm.xml else ():
        if disk.device != "disk":
            continue
        path = disk.source_path or _volume_path(vm, disk.source_pool, disk.source_volume)
        if path:
            disks.append({"path": path, "format": disk.format or "raw", "bus": disk.bus or "virtio"})
    return disks


def _volume_path(vm: VirtualMachine, pool: str | None, name: str | None) -> str | None:
    if not pool or not name:
        return None
    volume = Volume.objects.filter(pool__host_id=vm.host_id, pool__name=pool, name=name).first()
    return volume.path if volume is not None and volume.path else None


def vm_set_template(*, actor: Actor, vm: VirtualMachine, template: bool) -> VirtualMachine:
    """Mark a shut-off VM as a template, or unmark it. The caller checked access ("vm.act")."""
    action = "vm.template-on" if template else "vm.template-off"
    if vm.is_template == template:
        reason = f"{vm.name} is {'already' if template else 'not'} a template."
        _refuse(actor, vm, action, reason)
    if template and vm.state != VirtualMachine.State.SHUTOFF:
        _refuse(
            actor,
            vm,
            action,
            f"Cannot make {vm.name} a template: it is {vm.get_state_display().lower()}. Shut it down first.",
        )
    if template and not template_disks(vm):
        _refuse(actor, vm, action, f"Cannot make {vm.name} a template: it has no disk image to copy.")
    vm.is_template = template
    vm.version += 1
    vm.save(update_fields=["is_template", "version", "updated"])
    audit_record(actor=actor, action=action, target=vm.as_target(), outcome=AuditEvent.Outcome.SUCCEEDED)
    vms_publish([vm], host_id=vm.host_id)
    return vm


def _refuse(actor: Actor, vm: VirtualMachine, action: str, reason: str) -> None:
    audit_record(actor=actor, action=action, target=vm.as_target(), outcome=AuditEvent.Outcome.FAILED, message=reason)
    raise Conflict(reason)


def vm_reassign(*, actor: Actor, vm: VirtualMachine, owner: Any) -> VirtualMachine:
    """Give `vm` to another user (or to nobody). The caller checked access ("vm.reassign")."""
    previous = vm.owner
    if owner == previous:
        _refuse(
            actor, vm, "vm.reassign", f"{vm.name} already belongs to {owner.get_username() if owner else 'nobody'}."
        )
    vm.owner = owner
    vm.version += 1
    vm.save(update_fields=["owner", "version", "updated"])
    new_name = owner.get_username() if owner else "nobody"
    message = f"From {previous.get_username() if previous else 'nobody'} to {new_name}."
    audit_record(
        actor=actor, action="vm.reassign", target=vm.as_target(), outcome=AuditEvent.Outcome.SUCCEEDED, message=message
    )
    vms_publish([vm], host_id=vm.host_id)
    if previous is not None:
        # The previous owner's pages drop the VM: they may no longer see it.
        publish([groups.user_group(previous.pk)], {"type": "vm.bulk", "host": vm.host_id, "changed": 1})
        # Nor use its console: their live sessions on it are closed once this commits.
        sessions_close_lost_access(vm=vm, user_id=previous.pk, reason=f"{vm.name} now belongs to {new_name}.")
    return vm


def assignable_users() -> list[Any]:
    return list(get_user_model().objects.filter(is_active=True).order_by("username"))


def owner_named(username: str) -> Any:
    """The active user called `username`, or None for "nobody"; Invalid when there is no such user."""
    if not username:
        return None
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise Invalid(f"There is no active user called {username!r}.", details={"owner": "No such user."})
    return user
