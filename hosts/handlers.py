"""Operation handlers for hosts, run by a worker."""

from typing import Any

from hosts.inventory import host_reconcile, host_snapshots_sync
from hosts.models import Host
from hosts.services import host_apply_info, host_mark_unreachable
from kvmweb import virt
from kvmweb.errors import Invalid
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress
from networks.interfaces import host_interfaces_refresh


def _host(op: Operation) -> Host:
    host = Host.objects.filter(pk=op.target_id).first()
    if host is None:
        raise Invalid("The host was removed from kvmweb before it could be contacted.")
    return host


def _unreachable_is_recorded(host: Host, call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except virt.VirtError as exc:
        if exc.transient:
            host_mark_unreachable(host=host, reason=exc.message)
        raise


def _contact(op: Operation, progress: Progress) -> dict[str, Any]:
    """Connect, read capabilities, then index everything the host has."""
    host = _host(op)
    progress(10, f"Connecting to {host.uri}")
    info = _unreachable_is_recorded(host, virt.get_host_info, host.virt_target())
    ksm = _unreachable_is_recorded(host, virt.get_host_memory_params, host.virt_target())
    host_apply_info(host=host, info=info, ksm=ksm)
    progress(50, "Reading the inventory")
    inventory = _unreachable_is_recorded(host, virt.get_inventory, host.virt_target())
    progress(80, f"Indexing {len(inventory.domains)} VMs")
    result = host_reconcile(host=host, inventory=inventory)
    host_interfaces_refresh(host=host)
    result["snapshots_reread"] = host_snapshots_sync(host=host)
    return {"libvirt_version": info.libvirt_version, "virt_types": list(info.virt_types), **result}


def _reconcile(op: Operation, progress: Progress) -> dict[str, Any]:
    host = _host(op)
    progress(20, "Reading the inventory")
    inventory = _unreachable_is_recorded(host, virt.get_inventory, host.virt_target())
    progress(60, f"Indexing {len(inventory.domains)} VMs")
    result = host_reconcile(host=host, inventory=inventory)
    host_interfaces_refresh(host=host)
    result["snapshots_reread"] = host_snapshots_sync(host=host)
    return result


# Unreachable is itself the answer a user needs from a contact attempt, so no retry here.
add_host = operation_kind("host.add", label="Add host", deadline_seconds=300, retry_transient=False)(_contact)
refresh_host = operation_kind("host.refresh", label="Refresh host", deadline_seconds=300, retry_transient=False)(
    _contact
)
reconcile_host = operation_kind("host.reconcile", label="Reconcile inventory", deadline_seconds=600)(_reconcile)
