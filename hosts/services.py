"""Writes for hosts. `host_check` validates untrusted input; the rest trust their arguments."""

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from django.db import transaction
from django.utils import timezone

from consoles.targets import console_address_error
from hosts.messages import host_publish, watcher_notify
from hosts.models import CENTRAL_QUEUE, Host
from kvmweb import virt
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record
from kvmweb.errors import Conflict, Invalid
from kvmweb.operations.models import Operation
from kvmweb.operations.services import operation_start

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# 64 characters at most, Host.queue's length; "default" and "stats" belong to the central workers.
QUEUE_RE = re.compile(r"^host\.[a-z0-9-]{1,58}$")


@dataclass(frozen=True, slots=True)
class HostInput:
    name: str
    uri: str
    ssh_key_path: str = ""
    tls_pki_path: str = ""
    enabled: bool = True
    console_address: str = ""
    queue: str = ""


def host_check(data: HostInput, *, instance: Host | None = None) -> HostInput:
    """Validate everything before anything is written; errors are keyed by field."""
    errors: dict[str, object] = {}
    name = data.name.strip()
    if not NAME_RE.match(name):
        errors["name"] = "Use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit."
    elif Host.objects.filter(name__iexact=name).exclude(pk=instance.pk if instance else -1).exists():
        errors["name"] = f"A host named {name!r} already exists."
    uri = data.uri.strip()
    try:
        uri = virt.validate_uri(uri)
    except virt.InvalidArgument as exc:
        errors["uri"] = exc.message
    for field in ("ssh_key_path", "tls_pki_path"):
        value = getattr(data, field).strip()
        if value and not PurePosixPath(value).is_absolute():
            errors[field] = "Give an absolute path on the kvmweb worker, e.g. /etc/kvmweb/keys/id_ed25519."
    if data.ssh_key_path.strip() and not uri.startswith("qemu+ssh://"):
        errors.setdefault("ssh_key_path", "A key file only applies to qemu+ssh:// URIs.")
    if data.tls_pki_path.strip() and not uri.startswith("qemu+tls://"):
        errors.setdefault("tls_pki_path", "A PKI directory only applies to qemu+tls:// URIs.")
    console_address = data.console_address.strip()
    if "uri" not in errors and (problem := console_address_error(console_address, uri=uri)):
        errors["console_address"] = problem
    queue = data.queue.strip()
    if problem := _queue_error(queue):
        errors["queue"] = problem
    if errors:
        raise Invalid("The host was not saved: fix the fields marked below.", details=errors)
    return HostInput(
        name, uri, data.ssh_key_path.strip(), data.tls_pki_path.strip(), data.enabled, console_address, queue
    )


def _queue_error(queue: str) -> str | None:
    if not queue or QUEUE_RE.match(queue):
        return None
    if queue in (CENTRAL_QUEUE, "stats"):
        return f"{queue!r} is a queue of the central workers: leave the field empty to have them run this host's work."
    return "Use host. followed by 1-58 lowercase letters, digits or '-', e.g. host.kvm1, or leave it empty."


def host_create(*, actor: Actor, data: HostInput) -> tuple[Host, Operation | None]:
    """Add a host and queue its first contact (connect, read capabilities)."""
    clean = host_check(data)
    with transaction.atomic():
        host = Host.objects.create(
            name=clean.name,
            uri=clean.uri,
            ssh_key_path=clean.ssh_key_path,
            tls_pki_path=clean.tls_pki_path,
            console_address=clean.console_address,
            queue=clean.queue,
            enabled=clean.enabled,
            state=Host.State.UNREACHABLE if clean.enabled else Host.State.DISABLED,
        )
        audit_record(actor=actor, action="host.create", target=host.as_target(), outcome=AuditEvent.Outcome.SUCCEEDED)
        host_publish(host)
        watcher_notify(host.pk)
        op = None
        if clean.enabled:
            op = operation_start(kind="host.add", target=host.as_target(), actor=actor, queue=host.task_queue)
    return host, op


def host_update(*, actor: Actor, host: Host, data: HostInput) -> tuple[Host, Operation | None]:
    clean = host_check(data, instance=host)
    reconnect = clean.enabled and (
        not host.enabled
        or (clean.uri, clean.ssh_key_path, clean.tls_pki_path) != (host.uri, host.ssh_key_path, host.tls_pki_path)
    )
    with transaction.atomic():
        host.name, host.uri = clean.name, clean.uri
        host.ssh_key_path, host.tls_pki_path, host.enabled = clean.ssh_key_path, clean.tls_pki_path, clean.enabled
        host.console_address, host.queue = clean.console_address, clean.queue
        if not clean.enabled:
            host.state = Host.State.DISABLED
        elif host.state == Host.State.DISABLED:
            host.state = Host.State.UNREACHABLE
        host.save()
        audit_record(actor=actor, action="host.change", target=host.as_target(), outcome=AuditEvent.Outcome.SUCCEEDED)
        host_publish(host)
        watcher_notify(host.pk)
        op = None
        if reconnect:
            op = operation_start(kind="host.refresh", target=host.as_target(), actor=actor, queue=host.task_queue)
    return host, op


def host_refresh(*, actor: Actor, host: Host) -> Operation:
    if not host.enabled:
        audit_record(
            actor=actor,
            action="host.refresh",
            target=host.as_target(),
            outcome=AuditEvent.Outcome.FAILED,
            message="Host is disabled",
        )
        raise Conflict(f"Cannot refresh {host.name}: the host is disabled. Enable it first.")
    return operation_start(kind="host.refresh", target=host.as_target(), actor=actor, queue=host.task_queue)


def host_delete(*, actor: Actor, host: Host, confirm_name: str) -> None:
    """Forget a host. The hypervisor and its guests are never touched."""
    target = host.as_target()
    if confirm_name.strip() != host.name:
        raise Invalid(
            f"Type the host's name, {host.name}, to confirm.", details={"confirm_name": "The name does not match."}
        )
    busy = Operation.objects.filter(target_type="host", target_id=str(host.pk), status__in=Operation.ACTIVE).first()
    if busy is not None:
        raise Conflict(f"{host.name} is busy: {busy.kind_label} (#{busy.pk}) is {busy.status}. Wait for it to finish.")
    with transaction.atomic():
        host.delete()
        audit_record(actor=actor, action="host.delete", target=target, outcome=AuditEvent.Outcome.SUCCEEDED)
        host_publish(None, deleted=target)
        watcher_notify(int(target.id))


def host_apply_info(*, host: Host, info: virt.HostInfo, ksm: virt.KsmInfo | None = None) -> None:
    """What the hypervisor said about itself becomes the host's row.

    KSM figures come from a separate call; without new ones the last reported are kept.
    """
    host.state = Host.State.CONNECTED
    host.last_error = ""
    host.last_seen = timezone.now()
    host.libvirt_version = info.libvirt_version or ""
    host.hypervisor = info.hypervisor or ""
    host.hypervisor_version = info.hypervisor_version or ""
    previous_ksm = host.capabilities.get("ksm")
    host.capabilities = {**info.to_dict(), "ksm": ksm.to_dict() if ksm is not None else previous_ksm}
    host.save(
        update_fields=[
            "state",
            "last_error",
            "last_seen",
            "libvirt_version",
            "hypervisor",
            "hypervisor_version",
            "capabilities",
            "updated",
        ]
    )
    host_publish(host)


def host_mark_unreachable(*, host: Host, reason: str) -> None:
    Host.objects.filter(pk=host.pk).update(state=Host.State.UNREACHABLE, last_error=reason, updated=timezone.now())
    host.state, host.last_error = Host.State.UNREACHABLE, reason
    host_publish(host)
