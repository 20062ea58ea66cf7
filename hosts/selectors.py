from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, Sum

from hosts.models import Host
from kvmweb import access
from kvmweb.errors import NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.selectors import active_operation_by_target
from networks.interfaces import host_interfaces
from networks.selectors import annotate_modes
from storage.selectors import saved_states


def hosts_for_list(user: AbstractBaseUser | AnonymousUser) -> list[Host]:
    """Visible hosts with their VM counts (of the VMs the user may see) and active operations:
    two queries whatever the count."""
    vms = access.visible_vms(user).exclude(state="gone")
    hosts: list[Host] = list(access.visible_hosts(user).annotate(vm_count=Count("vms", filter=Q(vms__in=vms))))
    active = active_operation_by_target("host", [str(h.pk) for h in hosts])
    for host in hosts:
        host.active_operation = active.get(str(host.pk))  # type: ignore[attr-defined]
    return hosts


def host_get(user: AbstractBaseUser | AnonymousUser, host_id: int) -> Host:
    host = access.visible_hosts(user).filter(pk=host_id).first()
    if host is None:
        raise NotVisible("No such host.")
    return host


def host_operations(host: Host, limit: int = 20) -> list[Operation]:
    ops = Operation.objects.filter(target_type="host", target_id=str(host.pk)).select_related("requested_by")
    return list(ops[:limit])


def host_counts(hosts: list[Host]) -> dict[str, int]:
    counts = {state: 0 for state in Host.State.values}
    for host in hosts:
        counts[host.state] += 1
    return {"total": len(hosts), **counts}


def any_simulated_host() -> bool:
    return Host.objects.filter(uri__startswith="test").exists()


HOST_PAGE_VMS = 200


def host_inventory(user: AbstractBaseUser | AnonymousUser, host: Host) -> dict[str, Any]:
    """The host page's VMs (those the user may see), networks and pools, from the index only."""
    vms = (
        access.visible_vms(user)
        .filter(host=host)
        .exclude(state="gone")
        .select_related("owner")
        .defer("xml", "xml_inactive")
    )
    return {
        "vms": list(vms.order_by("name")[:HOST_PAGE_VMS]),
        "vm_total": vms.count(),
        "vm_page_limit": HOST_PAGE_VMS,
        "networks": annotate_modes(list(host.networks.filter(gone_since__isnull=True).order_by("name"))),
        "interfaces": host_interfaces(host),
        "pools": list(
            host.pools.filter(gone_since__isnull=True)
            .defer("xml")
            .annotate(volume_count=Count("volumes"))
            .order_by("name")
        ),
        "saved": saved_states(user, host_id=host.pk),
    }


def capacity(user: AbstractBaseUser | AnonymousUser, hosts: list[Host]) -> dict[str, int]:
    """What running guests use against what connected hosts have, for the dashboard."""
    connected = [h for h in hosts if h.state == Host.State.CONNECTED]
    running = access.visible_vms(user).filter(host__in=connected, state__in=["running", "paused", "blocked"])
    used = running.aggregate(vcpus=Sum("vcpus"), memory_kib=Sum("memory_kib"))
    pools = access.visible_pools(user).filter(host__in=connected, gone_since__isnull=True)
    space = pools.aggregate(capacity=Sum("capacity"), allocation=Sum("allocation"), available=Sum("available"))
    return {
        "cpus": sum(h.capabilities.get("cpus") or 0 for h in connected),
        "vcpus_running": used["vcpus"] or 0,
        "memory_kib": sum(h.capabilities.get("memory_kib") or 0 for h in connected),
        "memory_kib_running": used["memory_kib"] or 0,
        "storage_capacity": space["capacity"] or 0,
        "storage_allocation": space["allocation"] or 0,
        "storage_available": space["available"] or 0,
    }
