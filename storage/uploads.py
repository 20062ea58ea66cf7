"""Uploads: the browser's file goes to a temporary file first, then a worker streams it into libvirt.

The web process writes the request body to KVMWEB_VAR_DIR/uploads in chunks (never whole in
memory), after checking the declared size against the pool's free space. The operation
`volume.upload` streams that file into a new volume with `volumes.upload_volume`, reporting
progress, and removes the file however it ends. Cancelling marks the operation cancelled; the
worker notices between chunks, stops, and libvirt's half-written volume is deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_close_for_operation
from kvmweb.errors import Conflict, Invalid, KvmwebError, NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress, operation_publish, operation_start
from kvmweb.virt import volumes
from kvmweb.virt.xml.volume_spec import MAX_CAPACITY, human_size
from storage.models import StoragePool
from storage.volumes import (
    MANAGE,
    User,
    _require_free_name,
    _require_space,
    _require_usable,
    check_format,
    check_name,
    new_volume_target,
    refresh_host_storage,
)

UPLOAD_CHUNK = 1024 * 1024
KIND = "volume.upload"


class UploadCancelled(KvmwebError):
    """Raised between chunks once the operation was cancelled."""


def upload_dir() -> Path:
    path = Path(settings.VAR_DIR) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_upload(pool: StoragePool, *, name: Any, fmt: Any, size: Any) -> tuple[str, str, int]:
    """Refuse an upload before a byte is read: bad name or format, unknown or absurd size, full pool."""
    clean_name = check_name("name", name)
    clean_format = check_format(fmt, "raw")
    try:
        declared = int(str(size))
    except ValueError:
        declared = 0
    if declared < 1 or declared > MAX_CAPACITY:
        message = "Send the file's size (Content-Length), from 1 byte to 64 TiB."
        raise Invalid(message, details={"size": message})
    _require_usable(pool)
    _require_free_name(pool, clean_name)
    _require_space(pool, declared, clean_name)
    return clean_name, clean_format, declared


def upload_receive(*, actor: Actor, pool: StoragePool, name: Any, fmt: Any, size: Any, body: IO[bytes]) -> Operation:
    """Write `body` (exactly `size` bytes) to a temporary file and queue the operation that sends it
    to the host. The caller has authorized `actor` for the pool. Nothing is left behind on refusal."""
    clean_name, clean_format, declared = check_upload(pool, name=name, fmt=fmt, size=size)
    path = upload_dir() / f"{uuid.uuid4().hex}.part"
    try:
        written = _write(body, path, declared)
        if written != declared:
            raise Invalid(f"The upload ended after {written} of the {declared} bytes announced; nothing was kept.")
        params = {"pool": pool.pk, "name": clean_name, "format": clean_format, "size": declared, "file": path.name}
        return operation_start(kind=KIND, target=new_volume_target(pool, clean_name), actor=actor, params=params)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _write(body: IO[bytes], path: Path, limit: int) -> int:
    written = 0
    with path.open("wb") as out:
        while written <= limit:
            chunk = body.read(min(UPLOAD_CHUNK, limit + 1 - written))
            if not chunk:
                break
            out.write(chunk)
            written += len(chunk)
    if written > limit:
        raise Invalid(f"The upload is longer than the {limit} bytes announced; nothing was kept.")
    return written


def upload_for_cancel(*, actor: Actor, user: User, op_id: int) -> Operation:
    op = access.visible_operations(user).filter(pk=op_id, kind=KIND).first()
    if op is None:
        raise NotVisible("No such upload.")
    access.authorize(actor, MANAGE, target=op.target)
    return op


def upload_cancel(*, actor: Actor, op: Operation) -> Operation:
    """Mark the upload cancelled. A pending one never starts (its file goes now); a running one stops
    at its next chunk and its partial volume is deleted."""
    who = actor.user.get_username() if actor.user is not None and actor.user.is_authenticated else "someone"
    now = timezone.now()
    reason = f"Cancelled by {who}."
    with transaction.atomic():
        was = Operation.objects.select_for_update().filter(pk=op.pk).values_list("status", flat=True).first()
        if was not in Operation.ACTIVE:
            raise Conflict(f"The upload is already {was}.", details={"status": was})
        Operation.objects.filter(pk=op.pk).update(status=Operation.Status.CANCELLED, finished=now, error=reason)
        audit_close_for_operation(operation_id=op.pk, outcome=AuditEvent.Outcome.FAILED, message=reason)
    op.refresh_from_db()
    if was == Operation.Status.PENDING:
        _temp_path(op).unlink(missing_ok=True)
    operation_publish(op)
    return op


def _temp_path(op: Operation) -> Path:
    return upload_dir() / Path(str(op.params.get("file", ""))).name


def _still_wanted(op: Operation) -> bool:
    status = Operation.objects.filter(pk=op.pk).values_list("status", flat=True).first()
    return status == Operation.Status.RUNNING


def _chunks(op: Operation, path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(UPLOAD_CHUNK):
            if not _still_wanted(op):
                raise UploadCancelled("The upload was cancelled; the partial volume was deleted.")
            yield chunk


@operation_kind(KIND, label="Upload volume", deadline_seconds=6 * 3600, retry_transient=False)
def _upload(op: Operation, progress: Progress) -> dict[str, Any]:
    path = _temp_path(op)
    try:
        pool = StoragePool.objects.select_related("host").get(pk=op.params["pool"])
        size, name = int(op.params["size"]), str(op.params["name"])

        def sent(done: int, total: int) -> None:
            progress(int(99 * done / total), f"Sent {human_size(done)} of {human_size(total)} to {pool.host.name}")

        progress(0, f"Sending {name} to {pool.name} on {pool.host.name}")
        record = volumes.upload_volume(
            pool.host.virt_target(),
            pool.name,
            name,
            _chunks(op, path),
            size=size,
            format=str(op.params["format"]),
            progress=sent,
        )
        refresh_host_storage(pool.host, pool)
        row = pool.volumes.filter(name=record.name).first()
        return {"volume": row.pk if row else None, "path": record.path, "size": size}
    finally:
        path.unlink(missing_ok=True)
