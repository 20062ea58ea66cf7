"""Operation handlers for hosts, run by a worker."""

from typing import Any

from hosts.models import Host
from hosts.services import host_apply_info, host_mark_unreachable
from kvmweb import virt
from kvmweb.errors import Invalid
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress


def _contact(op: Operation, progress: Progress) -> dict[str, Any]:
    host = Host.objects.filter(pk=op.target_id).first()
    if host is None:
        raise Invalid("The host was removed from kvmweb before it could be contacted.")
    progress(10, f"Connecting to {host.uri}")
    try:
        info = virt.get_host_info(host.virt_target())
    except virt.VirtError as exc:
        host_mark_unreachable(host=host, reason=exc.message)
        raise
    progress(80, "Reading capabilities")
    host_apply_info(host=host, info=info)
    return {"libvirt_version": info.libvirt_version, "virt_types": list(info.virt_types)}


# Unreachable is itself the answer a user needs from a contact attempt, so no retry here.
add_host = operation_kind("host.add", label="Add host", deadline_seconds=120, retry_transient=False)(_contact)
refresh_host = operation_kind("host.refresh", label="Refresh host", deadline_seconds=120, retry_transient=False)(
    _contact
)
