from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from hosts.models import Host
from kvmweb import access
from kvmweb.errors import NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.selectors import active_operation_by_target


def hosts_for_list(user: AbstractBaseUser | AnonymousUser) -> list[Host]:
    """Visible hosts, each with its active operation attached: two queries whatever the count."""
    hosts = list(access.visible_hosts(user))
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
