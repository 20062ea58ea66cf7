"""Uploads: the browser's file goes to a temporary file, which a worker streams into libvirt as it grows.

The web process writes the request body to KVMWEB_VAR_DIR/uploads in chunks (never whole in
memory), after checking the declared size against the pool's free space. Once the first chunk is
on disk it starts the operation `volume.upload`, which streams that file into a new volume with
`volumes.upload_volume` while the rest is still arriving (following the file's growth), so an
upload takes about as long as the slower of the two legs, not their sum. The web process reads the
body straight from gunicorn's socket where it can (storage/upload_body.py), and the worker frees
each part of the file once it has read it, so the file holds little more than the gap between the
two legs. The file is removed however it ends. Cancelling marks the operation cancelled; the web
process and the worker notice within CHECK_INTERVAL, stop, and libvirt's half-written volume is
deleted. A body that ends early or runs long fails the operation the same way.
"""

from __future__ import annotations

import ctypes
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hosts.models import CENTRAL_QUEUE
from kvmweb import access, virt
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_close_for_operation
from kvmweb.errors import Conflict, Invalid, KvmwebError, NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress, operation_publish, operation_start
from kvmweb.virt import volumes
from kvmweb.virt.xml.volume_spec import MAX_CAPACITY, MIN_CAPACITY, human_size
from storage.models import StoragePool
from storage.upload_body import Body
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
# How often each side looks at the operation (cancelled? failed by the other side?) and the worker
# reports progress: a query for every chunk would cost more than copying it.
CHECK_INTERVAL = 0.5
# The worker waits this long for the file to grow before it gives up: the web process that wrote it
# is gone (killed mid-request), since a live one ends the operation itself when its client stops.
STALL_SECONDS = 120.0
FOLLOW_POLL = 0.01
KIND = "volume.upload"
# fallocate(2) mode FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (linux/falloc.h); os has no fallocate.
PUNCH_HOLE = 0x02 | 0x01
_fallocate = ctypes.CDLL(None, use_errno=True).fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


class UploadCancelled(Conflict):
    """Raised between chunks once the operation was cancelled, or ended by the other side."""


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


def upload_receive(*, actor: Actor, pool: StoragePool, name: Any, fmt: Any, size: Any, body: Body) -> Operation:
    """Write `body` (exactly `size` bytes) to a temporary file and start the operation that sends it to
    the host, once the first chunk is on disk: the worker streams while the rest arrives. The caller
    has authorized `actor` for the pool. A refusal before that chunk records nothing; a body that
    ends early or runs long, or an upload cancelled meanwhile, ends the operation (the worker
    removes what it sent), and no file is left either way."""
    clean_name, clean_format, declared = check_upload(pool, name=name, fmt=fmt, size=size)
    path = upload_dir() / f"{uuid.uuid4().hex}.part"
    params = {"pool": pool.pk, "name": clean_name, "format": clean_format, "size": declared, "file": path.name}
    op: Operation | None = None
    written = 0
    checked = 0.0
    try:
        with path.open("wb", buffering=0) as out:
            for written in _spool(body, out, declared):
                now = time.monotonic()
                if op is None and (written >= UPLOAD_CHUNK or written == declared):
                    # A central worker, whatever the host's queue: the spool is on this machine's disk,
                    # which a worker on the KVM host cannot read; it streams to the host through libvirt.
                    op = operation_start(
                        kind=KIND,
                        target=new_volume_target(pool, clean_name),
                        actor=actor,
                        params=params,
                        queue=CENTRAL_QUEUE,
                    )
                    checked = now
                elif op is not None and now - checked >= CHECK_INTERVAL:
                    checked = now
                    _require_active(op)
        assert op is not None  # the body ended at `declared` bytes, which started it
        return op
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if op is not None:
            _end(op, Operation.Status.FAILED, _spool_failure(exc, written, declared))
        raise


def _spool(body: Body, out: IO[bytes], limit: int) -> Iterator[int]:
    """Copy `body` to `out` a chunk at a time through one buffer, yielding the bytes written so far.
    The last chunk is written only once the body is known to end there, so a file of `limit` bytes
    is a whole upload."""
    buffer, past_end = memoryview(bytearray(UPLOAD_CHUNK)), memoryview(bytearray(1))
    written = 0
    while written < limit:
        got = _fill(body, buffer[: min(UPLOAD_CHUNK, limit - written)])
        if not got:
            raise Invalid(f"The upload ended after {written} of the {limit} bytes announced; nothing was kept.")
        if written + got == limit and body.readinto(past_end):
            raise Invalid(f"The upload is longer than the {limit} bytes announced; nothing was kept.")
        view = buffer[:got]
        while view:
            view = view[out.write(view) :]
        written += got
        yield written


def _fill(body: Body, buffer: memoryview) -> int:
    """Read into `buffer` until it is full or the body ends: a socket hands out what has arrived,
    and one write of a full buffer costs less than many small ones."""
    filled = 0
    while filled < len(buffer) and (got := body.readinto(buffer[filled:])):
        filled += got
    return filled


def _spool_failure(exc: BaseException, written: int, declared: int) -> str:
    if isinstance(exc, KvmwebError):
        return exc.message
    # OSError: the client went away (Django's UnreadablePostError); else the web process is stopping
    # (SystemExit from gunicorn's worker timeout, for one).
    why = "the connection broke" if isinstance(exc, OSError) else "the web server stopped receiving it"
    return (
        f"The upload stopped after {human_size(written)} of {human_size(declared)}: {why} "
        f"({type(exc).__name__}); nothing was kept."
    )


def _require_active(op: Operation) -> None:
    """Stop receiving once the operation ended early: cancelled, or failed by the worker."""
    status, error = Operation.objects.filter(pk=op.pk).values_list("status", "error").first() or ("gone", "")
    if status not in Operation.ACTIVE:
        raise UploadCancelled(f"The upload stopped: {error or f'it is {status}.'}", details={"operation": op.pk})


def upload_for_cancel(*, actor: Actor, user: User, op_id: int) -> Operation:
    op = access.visible_operations(user).filter(pk=op_id, kind=KIND).first()
    if op is None:
        raise NotVisible("No such upload.")
    access.authorize(actor, MANAGE, target=op.target)
    return op


def upload_cancel(*, actor: Actor, op: Operation) -> Operation:
    """Mark the upload cancelled. A pending one never starts (its file goes now); a running one stops
    within CHECK_INTERVAL, in the web process still receiving it and in the worker, and its partial
    volume is deleted."""
    who = actor.user.get_username() if actor.user is not None and actor.user.is_authenticated else "someone"
    was = _end(op, Operation.Status.CANCELLED, f"Cancelled by {who}.")
    if was not in Operation.ACTIVE:
        raise Conflict(f"The upload is already {was}.", details={"status": was})
    if was == Operation.Status.PENDING:
        _temp_path(op).unlink(missing_ok=True)
    return op


def _end(op: Operation, status: str, reason: str) -> str | None:
    """End an active upload early, with `status` and `reason`; return the status it had (it is left
    alone when that is not an active one)."""
    with transaction.atomic():
        was = Operation.objects.select_for_update().filter(pk=op.pk).values_list("status", flat=True).first()
        if was not in Operation.ACTIVE:
            return was
        Operation.objects.filter(pk=op.pk).update(status=status, finished=timezone.now(), error=reason)
        audit_close_for_operation(operation_ids=[op.pk], outcome=AuditEvent.Outcome.FAILED, message=reason)
    op.refresh_from_db()
    operation_publish(op)
    return was


def _temp_path(op: Operation) -> Path:
    return upload_dir() / Path(str(op.params.get("file", ""))).name


def _still_wanted(op: Operation) -> bool:
    status = Operation.objects.filter(pk=op.pk).values_list("status", flat=True).first()
    return status == Operation.Status.RUNNING


def _lost(pool: StoragePool, name: str, size: int, exc: virt.HostUnreachable) -> str:
    """The host went away mid-stream, so libvirt could not delete the partial volume: try once more,
    and say what is left when the host still does not answer."""
    host = pool.host.name
    lost = f"The connection to {host} was lost during the upload ({exc.raw or exc.message})."
    try:
        left = volumes.volume_in_pool(pool.host.virt_target(), pool.name, name)
        # Only the volume this upload made: the name was free when it started, and it has the upload's size.
        if left is not None and left.path and left.capacity == max(size, MIN_CAPACITY):
            volumes.delete_volume(pool.host.virt_target(), left.path)
    except virt.VirtError:
        return f"{lost} The partial volume {pool.name}/{name} could not be removed: delete it once {host} is back."
    return f"{lost} No partial volume is left on {host}."


def _chunks(op: Operation, path: Path, size: int) -> Iterator[bytes]:
    """The file's `size` bytes, following it while the web process still writes it. At most every
    CHECK_INTERVAL the operation is looked at, and the transfer stops once it was cancelled or failed
    by the web process (its client went away)."""
    sent, checked, grew = 0, 0.0, time.monotonic()
    try:
        source = path.open("r+b")  # writable, to drop what was sent (_release)
    except FileNotFoundError:
        if _still_wanted(op):
            raise Invalid("The uploaded file is gone from the web server; upload it again.") from None
        raise UploadCancelled("The upload was cancelled; the partial volume was deleted.") from None
    with source:
        while sent < size:
            chunk = source.read(min(UPLOAD_CHUNK, size - sent))
            now = time.monotonic()
            if now - checked >= CHECK_INTERVAL:
                checked = now
                if not _still_wanted(op):
                    raise UploadCancelled("The upload was cancelled; the partial volume was deleted.")
            if chunk:
                grew = now
                _release(source.fileno(), sent, len(chunk))
                sent += len(chunk)
                yield chunk
            elif now - grew >= STALL_SECONDS:
                raise Invalid(
                    f"No data arrived for {STALL_SECONDS:g} s after {human_size(sent)} of {human_size(size)}: "
                    "the upload was abandoned and the partial volume deleted."
                )
            else:
                time.sleep(FOLLOW_POLL)  # the web process is still writing; a regular file offers no event


def _release(fd: int, offset: int, length: int) -> None:
    """Drop bytes of the temporary file once read: their page cache (dirty, never written back) and
    disk blocks are freed, and the web process's next writes reuse those pages. Writing 1 GiB into
    ever new page cache while libvirt writes the volume cost 1-2 CPU s (copy_folio_from_iter_atomic
    in perf); into recycled pages ~0.2 s. Best effort: on a file system that cannot punch holes
    fallocate fails, and the bytes stay until the file is removed."""
    _fallocate(fd, PUNCH_HOLE, offset, length)


@operation_kind(KIND, label="Upload volume", deadline_seconds=6 * 3600, retry_transient=False)
def _upload(op: Operation, progress: Progress) -> dict[str, Any]:
    path = _temp_path(op)
    try:
        pool = StoragePool.objects.select_related("host").get(pk=op.params["pool"])
        size, name = int(op.params["size"]), str(op.params["name"])

        reported = [0.0]

        def sent(done: int, total: int) -> None:
            now = time.monotonic()
            if done == total or now - reported[0] >= CHECK_INTERVAL:
                reported[0] = now
                progress(int(99 * done / total), f"Sent {human_size(done)} of {human_size(total)} to {pool.host.name}")

        progress(0, f"Sending {name} to {pool.name} on {pool.host.name}")
        try:
            record = volumes.upload_volume(
                pool.host.virt_target(),
                pool.name,
                name,
                _chunks(op, path, size),
                size=size,
                format=str(op.params["format"]),
                progress=sent,
            )
        except virt.HostUnreachable as exc:
            raise virt.HostUnreachable(_lost(pool, name, size, exc), code=exc.code, raw=exc.raw) from exc
        refresh_host_storage(pool.host, pool)
        row = pool.volumes.filter(name=record.name).first()
        return {"volume": row.pk if row else None, "path": record.path, "size": size}
    finally:
        path.unlink(missing_ok=True)
