"""The WebSocket payload for a host, and the groups that may see it."""

from typing import Any

from hosts.models import Host
from kvmweb.realtime import groups
from kvmweb.realtime.publish import publish
from kvmweb.targets import Target
from vms.models import VirtualMachine


def host_payload(host: Host) -> dict[str, Any]:
    caps = host.capabilities
    return {
        "id": host.pk,
        "name": host.name,
        "state": host.state,
        "state_label": host.get_state_display(),
        "last_seen": host.last_seen.isoformat() if host.last_seen else None,
        "last_error": host.last_error,
        "libvirt_version": host.libvirt_version,
        "hypervisor": host.hypervisor,
        "hypervisor_version": host.hypervisor_version,
        "virt_types": caps.get("virt_types") or [],
        "cpus": caps.get("cpus"),
        "memory_kib": caps.get("memory_kib"),
    }


def host_publish(host: Host | None, *, deleted: Target | None = None) -> None:
    if deleted is not None:
        message = {"type": "host.deleted", "host": {"id": int(deleted.id), "name": deleted.label}}
        publish([groups.ADMINS, groups.host_group(deleted.id)], message)
        return
    assert host is not None
    publish([groups.ADMINS, groups.host_group(host.pk)], {"type": "host.state", "host": host_payload(host)})
    # The owners of its VMs who are not members see the host only through their VMs' pages, whose actions
    # follow its state: they hear that it changed, in no more words than those pages show.
    owners = _vm_owners_outside(host)
    if owners:
        publish([groups.user_group(pk) for pk in owners], {"type": "host.state", "host": host_owner_payload(host)})


def host_owner_payload(host: Host) -> dict[str, Any]:
    """What the owner of a VM on `host` may know of it: no error text, versions or capacity."""
    full = host_payload(host)
    return {key: full[key] for key in ("id", "name", "state", "state_label", "last_seen")}


def _vm_owners_outside(host: Host) -> list[int]:
    """Owners of VMs on `host` whose sockets do not join its group (neither members nor administrators)."""
    owners = VirtualMachine.objects.filter(host=host, owner__isnull=False).exclude(owner__in=host.members.all())
    owners = owners.exclude(owner__is_staff=True).exclude(owner__is_superuser=True)
    return list(owners.order_by().values_list("owner_id", flat=True).distinct())


def watcher_notify(host_id: int) -> None:
    """Tell the event watcher to re-read the hosts table: a host was added, changed or removed."""
    publish(groups.WATCHER, {"type": "host.changed", "host": host_id})
