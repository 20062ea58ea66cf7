"""Storage volumes: the disks that creating, cloning and deleting virtual machines make and remove.

Pools are named, and volumes are found by their path on the host, which is what a domain's
``<disk>`` holds. Every function returns ``VolumeRecord`` values, built like the inventory's.

``clone_volume`` and ``upload_volume`` take an optional ``progress(done_bytes, total_bytes)``
callback, called in the caller's thread. When it raises, the half-made volume is deleted and the
exception propagates, so raising is how a caller cancels.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import Any, cast, get_args

import libvirt

from kvmweb.virt.connection import Connection, connect
from kvmweb.virt.errors import AlreadyExists, InvalidArgument, InvalidOperation, NotFound
from kvmweb.virt.inventory import _listed, _volumes_of, volume_record
from kvmweb.virt.target import HostTarget
from kvmweb.virt.types import VolumeRecord
from kvmweb.virt.xml.checks import check_choice, require
from kvmweb.virt.xml.facts import volume_facts
from kvmweb.virt.xml.safe import parse
from kvmweb.virt.xml.volume_spec import MIN_CAPACITY, VolumeFormat, VolumeSpec, check_capacity, human_size
from kvmweb.virt.xml.volume_xml import build_volume_xml

Pool = Any  # a libvirt.virStoragePool; it never leaves this module
Volume = Any  # a libvirt.virStorageVol; it never leaves this module
Stream = Any  # a libvirt.virStream
Progress = Callable[[int, int], None]

# How often a clone reports progress; a module setting so tests can make it report more often.
PROGRESS_INTERVAL = 0.5
# A remote stream message carries at most 256 KiB; larger sends are cut up by libvirt anyway.
TRANSFER_CHUNK = 256 * 1024

_NO_VOLUME = frozenset({libvirt.VIR_ERR_NO_STORAGE_VOL})
_POOL_GONE = frozenset({libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_OPERATION_INVALID})
_IN_USE_WORDS = ("in use", "busy", "being allocated")
# qemu-img times PBKDF2 in CPU time to choose a LUKS volume's iteration count; on a busy host the
# sample can come out empty and it refuses with this. Nothing is left behind, so measuring again is safe.
# Measured on the 2-core lab: 7% of tries fail idle and 15% under load, and three in a row did fail a
# CI run; a refused try costs milliseconds.
_LUKS_TIMING = "Unable to get accurate CPU usage"
LUKS_ATTEMPTS = 10

# The start of a qcow2 header: magic, version, backing file offset; v3 adds feature bits at 72.
_QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_V3_HEADER = 80
_QCOW2_EXTERNAL_DATA_FILE = 1 << 2


def create_volume(target: HostTarget, pool: str, spec: VolumeSpec) -> VolumeRecord:
    """Create an empty volume. A full one is checked against the pool's free space first: the host
    would otherwise spend minutes writing zeros before running out."""
    flags = libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA if _preallocates(spec) else 0
    with connect(target) as conn:
        pool_obj = _active_pool(conn, pool)
        _refuse_taken(pool_obj, pool, spec.name)
        if spec.allocation == "full":
            _require_space(pool_obj, pool, spec.capacity_bytes)
        vol = create_xml_retrying(pool_obj, build_volume_xml(spec), flags)
        return _record(vol, str(pool_obj.UUIDString()))


def create_xml_retrying(pool_obj: Any, xml: str, flags: int) -> Any:
    for _ in range(LUKS_ATTEMPTS - 1):
        try:
            return pool_obj.createXML(xml, flags)
        except libvirt.libvirtError as exc:
            if _LUKS_TIMING not in str(exc):
                raise
    return pool_obj.createXML(xml, flags)


def clone_volume(
    target: HostTarget,
    pool: str,
    source_path: str,
    name: str,
    *,
    format: str | None = None,
    capacity_bytes: int | None = None,
    progress: Progress | None = None,
) -> VolumeRecord:
    """A full, independent copy of the volume at ``source_path`` (any pool of the host), in the
    source's format unless ``format`` says otherwise; a backing chain is flattened into the copy.

    ``progress`` gets the copy's allocation against the source's, about every PROGRESS_INTERVAL
    seconds and once more at the end; the host sometimes answers that query only when the copy is
    over, so reports can pause. A ``capacity_bytes`` above the source's grows the copy.
    """
    wanted_format = None if format is None else _volume_format("Volume format", format)
    with connect(target) as conn:
        pool_obj = _active_pool(conn, pool)
        source = _volume_at(conn, source_path)
        source_xml = source.XMLDesc(0)
        _refuse_encrypted(source_xml, source_path, "copied or converted")
        facts = volume_facts(source_xml)
        size = _known_capacity(facts.capacity, source_path)
        spec = VolumeSpec(name=name, capacity_bytes=size, format=wanted_format or _source_format(facts.format))
        capacity = _at_least(size, capacity_bytes, "A copy")
        _refuse_taken(pool_obj, pool, name)
        total = facts.allocation or size
        _require_space(pool_obj, pool, total)
        vol = _copy(pool_obj, build_volume_xml(spec), source, name, total, progress)
        try:
            if capacity > size:
                vol.resize(capacity, 0)
            if progress is not None:
                progress(total, total)
            return _record(vol, str(pool_obj.UUIDString()))
        except BaseException:
            _delete_quietly(vol)
            raise


def create_linked_volume(
    target: HostTarget,
    pool: str,
    backing_path: str,
    name: str,
    *,
    capacity_bytes: int | None = None,
) -> VolumeRecord:
    """A thin qcow2 overlay on the volume at ``backing_path``: made in an instant, it reads the
    backing volume's data, which must stay unchanged for as long as any overlay uses it."""
    with connect(target) as conn:
        pool_obj = _active_pool(conn, pool)
        backing = _volume_at(conn, backing_path)
        backing_xml = backing.XMLDesc(0)
        _refuse_encrypted(backing_xml, backing_path, "the backing file of a linked volume")
        facts = volume_facts(backing_xml)
        size = _known_capacity(facts.capacity, backing_path)
        spec = VolumeSpec(
            name=name,
            capacity_bytes=_at_least(size, capacity_bytes, "A linked volume"),
            format="qcow2",
            backing_path=facts.path or backing_path,
            # The backing volume's format as the pool knows it, written into the overlay so that
            # nothing has to guess it from the file's contents later.
            backing_format=_volume_format("Backing format", facts.format),
        )
        _refuse_taken(pool_obj, pool, name)
        vol = pool_obj.createXML(build_volume_xml(spec), 0)
        return _record(vol, str(pool_obj.UUIDString()))


def upload_volume(
    target: HostTarget,
    pool: str,
    name: str,
    chunks: Iterable[bytes],
    *,
    size: int,
    format: str = "raw",
    progress: Progress | None = None,
) -> VolumeRecord:
    """A new volume holding ``chunks`` (``size`` bytes in all), streamed one chunk at a time so a
    large upload never sits in memory; ``progress(sent, size)`` follows every chunk.

    The bytes are written as they are; ``format`` says what they hold, and data that does not match
    it is refused, as is a qcow2 image naming a backing or data file (it could show a guest any
    file on the host). A volume is at least 1 MiB, so a smaller upload (a seed ISO) is followed by
    zeros. On any failure the volume is deleted.
    """
    expected = _volume_format("Upload format", format)
    spec = VolumeSpec(name=name, capacity_bytes=_upload_capacity(size), format="raw")
    with connect(target) as conn:
        pool_obj = _active_pool(conn, pool)
        _refuse_taken(pool_obj, pool, name)
        _require_space(pool_obj, pool, size)
        vol = pool_obj.createXML(build_volume_xml(spec), 0)
        try:
            _send(conn, vol, chunks, size, expected, progress)
            # The host reads the format from the new data when it rescans the pool.
            _refresh_if_possible(pool_obj)
            return _record(vol, str(pool_obj.UUIDString()))
        except BaseException:
            _delete_quietly(vol)
            raise


def download_volume(target: HostTarget, path: str, *, chunk_size: int = TRANSFER_CHUNK) -> Generator[bytes, None, None]:
    """The bytes of the volume at ``path`` (its file, not the guest's view of a qcow2), as they arrive.

    Nothing happens, not even NotFound, until the first chunk is asked for. The host counts the
    volume as in use until the iterator is exhausted or closed.
    """
    with connect(target) as conn:
        vol = _volume_at(conn, path)
        stream = conn.newStream(0)
        vol.download(stream, 0, 0, 0)
        try:
            while chunk := stream.recv(chunk_size):
                yield bytes(chunk)
            stream.finish()
        except BaseException:
            _abort_quietly(stream)
            raise


def volume_file_size(target: HostTarget, path: str) -> int:
    """How many bytes ``download_volume`` gives for the volume at ``path``: its file's length, which
    for a qcow2 file is neither its capacity nor, when preallocated, its allocation."""
    with connect(target) as conn:
        return int(_volume_at(conn, path).infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])


def delete_volume(target: HostTarget, path: str) -> bool:
    """Delete the volume at ``path``; False when the host knows no volume there.

    Raises InvalidOperation when the host refuses because the volume is in use. Note that a
    directory pool only knows its own transfers: a guest using the file does not stop the delete,
    so the caller must check the guests (and backing-file users, see ``host_volumes``) first.
    """
    with connect(target) as conn:
        vol = _volume_at_or_none(conn, path)
        return vol is not None and _delete(vol, path)


def resize_volume(target: HostTarget, path: str, capacity_bytes: int) -> None:
    """Grow the volume at ``path``. Shrinking is refused: it would cut off what the guest stored at
    the end. A running guest needs its disk grown through the guest instead (a block resize)."""
    check_capacity("Capacity", capacity_bytes)
    with connect(target) as conn:
        vol = _volume_at(conn, path)
        current = int(vol.info()[1])
        require(
            capacity_bytes >= current,
            f"The volume {path} is {human_size(current)}; it can only grow, and {human_size(capacity_bytes)} "
            "would shrink it and cut off its end.",
        )
        if capacity_bytes > current:
            vol.resize(capacity_bytes, 0)


def wipe_volume(target: HostTarget, path: str) -> None:
    """Overwrite the volume at ``path`` with zeros (libvirt's default wipe). Its data is gone for good;
    a qcow2 volume's header goes too, so the volume reads as raw afterwards."""
    with connect(target) as conn:
        vol = _volume_at(conn, path)
        vol.wipe(0)


def backing_chain(target: HostTarget, path: str, *, limit: int = 16) -> tuple[VolumeRecord | str, ...]:
    """The volumes below the one at ``path``, nearest first: each a VolumeRecord, or the bare path when
    no pool of the host knows the file. Stops at ``limit`` links, and at a loop."""
    chain: list[VolumeRecord | str] = []
    seen = {path}
    record = volume_by_path(target, path)
    while record is not None and record.backing_path and len(chain) < limit:
        below = record.backing_path
        if below in seen:
            break
        seen.add(below)
        record = volume_by_path(target, below)
        chain.append(record if record is not None else below)
    return tuple(chain)


def volume_by_path(target: HostTarget, path: str) -> VolumeRecord | None:
    """The volume at ``path``, or None when no pool of the host has one there."""
    with connect(target) as conn:
        vol = _volume_at_or_none(conn, path)
        if vol is None:
            return None
        return _record(vol, str(vol.storagePoolLookupByVolume().UUIDString()))


def volume_encryption_secret(target: HostTarget, path: str) -> str | None:
    """None for a plain volume; for an encrypted one, the UUID of the secret its ``<encryption>``
    names ("" when it names none). Read before deleting a volume, to remove its secret after it."""
    with connect(target) as conn:
        return _encryption_secret(_volume_at(conn, path).XMLDesc(0))


def volume_in_pool(target: HostTarget, pool: str, name: str) -> VolumeRecord | None:
    """The volume called ``name`` in ``pool``, or None; for disks that name a pool volume, not a path."""
    with connect(target) as conn:
        pool_obj = _active_pool(conn, pool)
        try:
            vol = pool_obj.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise
        return _record(vol, str(pool_obj.UUIDString()))


def pool_of_volume(target: HostTarget, path: str) -> str | None:
    """The name of the pool holding the volume at ``path``, or None when no pool holds it."""
    with connect(target) as conn:
        vol = _volume_at_or_none(conn, path)
        return None if vol is None else str(vol.storagePoolLookupByVolume().name())


def host_volumes(target: HostTarget) -> tuple[VolumeRecord, ...]:
    """Every volume of every active pool, sorted by pool and name, each pool rescanned first so
    images made behind libvirt's back count too: this is how backing-file users are found before a
    disk is deleted. A pool that stops or vanishes meanwhile is left out."""
    with connect(target) as conn:
        records: list[VolumeRecord] = []
        for pool_obj in _listed(lambda: conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)):
            if _refresh_if_possible(pool_obj):
                records.extend(_volumes_of(pool_obj, str(pool_obj.UUIDString())))
    return tuple(sorted(records, key=lambda record: (record.pool_uuid, record.name)))


def refresh_pool(target: HostTarget, pool: str) -> None:
    """Rescan the pool so volumes made outside libvirt appear (and removed ones disappear)."""
    with connect(target) as conn:
        pool_obj = _active_pool(conn, pool)
        try:
            pool_obj.refresh(0)
        except libvirt.libvirtError as exc:
            if not _busy(exc):
                raise
            raw = _raw(exc)
            message = f"Storage pool {pool} is busy building a volume; rescan it once that is done."
            raise InvalidOperation(message, code=exc.get_error_code(), raw=raw) from exc


# Copying


def _copy(pool_obj: Pool, xml: str, source: Volume, name: str, total: int, progress: Progress | None) -> Volume:
    """createXMLFrom blocks for the whole copy, so it runs in a worker thread while this one watches
    the new volume grow (libvirt connections may be shared between threads)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="libvirt-clone") as executor:
        copying = executor.submit(pool_obj.createXMLFrom, xml, source, 0)
        try:
            return _wait_reporting(copying, pool_obj, name, total, progress)
        except BaseException:
            # libvirt removes a copy that failed; one that finished after we stopped is ours to remove.
            if copying.exception() is None:
                _delete_quietly(copying.result())
            raise


def _wait_reporting(
    copying: Future[Volume], pool_obj: Pool, name: str, total: int, progress: Progress | None
) -> Volume:
    if progress is None:
        return copying.result()
    while True:
        try:
            return copying.result(timeout=PROGRESS_INTERVAL)
        except TimeoutError:
            progress(min(_allocation(pool_obj, name), total), total)


def _allocation(pool_obj: Pool, name: str) -> int:
    """What the copy has written so far; 0 until the host lists it."""
    try:
        return int(pool_obj.storageVolLookupByName(name).info()[2])
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _NO_VOLUME:
            return 0
        raise


# Uploading


def _upload_capacity(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidArgument(f"An upload needs a size of at least 1 byte; got {size!r}.")
    return max(size, MIN_CAPACITY)


def _send(
    conn: Connection,
    vol: Volume,
    chunks: Iterable[bytes],
    size: int,
    expected: VolumeFormat,
    progress: Progress | None,
) -> None:
    stream = conn.newStream(0)
    vol.upload(stream, 0, size, 0)
    try:
        sent = 0
        head = b""
        for chunk in chunks:
            require(sent + len(chunk) <= size, f"The upload is longer than the {size} bytes announced.")
            if len(head) < _QCOW2_V3_HEADER:
                head = _checked_head(head + bytes(chunk[:_QCOW2_V3_HEADER]), expected, final=False)
            _send_all(stream, chunk)
            sent += len(chunk)
            if progress is not None:
                progress(sent, size)
        require(sent == size, f"The upload ended after {sent} of the {size} bytes announced.")
        _checked_head(head, expected, final=True)
        stream.finish()
    except BaseException:
        _abort_quietly(stream)
        raise


def _send_all(stream: Stream, data: bytes) -> None:
    # Cut first: resending the unsent tail of one huge chunk would copy it over and over.
    for start in range(0, len(data), TRANSFER_CHUNK):
        piece = bytes(data[start : start + TRANSFER_CHUNK])
        while piece:
            piece = piece[stream.send(piece) :]


def _checked_head(head: bytes, expected: VolumeFormat, *, final: bool) -> bytes:
    """Refuse data that is not what the caller said, as soon as its first bytes show it."""
    if len(head) < _QCOW2_V3_HEADER and not final:
        return head
    is_qcow2 = head.startswith(_QCOW2_MAGIC)
    if expected == "raw":
        require(not is_qcow2, "The uploaded data is a qcow2 image, not raw data; upload it as qcow2.")
        return head
    require(is_qcow2 and len(head) >= _QCOW2_V3_HEADER, "The uploaded data is not a qcow2 image.")
    require(
        standalone_qcow2(head),
        "The uploaded qcow2 image names a backing or data file, which could expose files of the host; "
        "upload a standalone image (qemu-img convert makes one).",
    )
    return head


def standalone_qcow2(head: bytes) -> bool:
    """Whether ``head``, the start of a file, is the header of a qcow2 image that names no backing
    file and no external data file, so that reading the image reads nothing but the file itself."""
    if not head.startswith(_QCOW2_MAGIC) or len(head) < _QCOW2_V3_HEADER:
        return False
    version, backing_offset = struct.unpack_from(">IQ", head, 4)
    incompatible = struct.unpack_from(">Q", head, 72)[0] if version >= 3 else 0
    return backing_offset == 0 and not incompatible & _QCOW2_EXTERNAL_DATA_FILE


# Lookups and checks


def _active_pool(conn: Connection, name: str) -> Pool:
    pool_obj = conn.storagePoolLookupByName(name)
    if not pool_obj.isActive():
        raise InvalidOperation(f"Storage pool {name} is not active; start it first.")
    return pool_obj


def _volume_at_or_none(conn: Connection, path: str) -> Volume | None:
    try:
        return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _NO_VOLUME:
            return None
        raise


def _volume_at(conn: Connection, path: str) -> Volume:
    vol = _volume_at_or_none(conn, path)
    if vol is None:
        raise NotFound(f"No storage pool of the host has a volume at {path}.")
    return vol


def _refuse_taken(pool_obj: Pool, pool: str, name: str) -> None:
    # libvirt would refuse too, but some drivers only after starting work, and with vaguer words.
    try:
        pool_obj.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _NO_VOLUME:
            return
        raise
    raise AlreadyExists(f"Storage pool {pool} already has a volume named {name}.")


def _require_space(pool_obj: Pool, pool: str, needed: int) -> None:
    available = int(pool_obj.info()[3])
    require(
        needed <= available,
        f"Not enough space in pool {pool}: needs {human_size(needed)}, has {human_size(available)}.",
    )


def _encryption_secret(xml: str) -> str | None:
    encryption = parse(xml).find("target/encryption")
    if encryption is None:
        return None
    secret = encryption.find("secret")
    return "" if secret is None else secret.get("uuid", "")


def _refuse_encrypted(xml: str, path: str, what: str) -> None:
    # A copy or overlay would need the source's passphrase and a secret of its own; not offered.
    if _encryption_secret(xml) is not None:
        raise InvalidOperation(f"The volume {path} is encrypted (LUKS); kvmweb does not let it be {what}.")


def _preallocates(spec: VolumeSpec) -> bool:
    """libvirt preallocates a qcow2 only when given this flag: "metadata" mode with an allocation of
    0, and "falloc" (every byte) with an allocation equal to the capacity. A raw file needs no flag."""
    return spec.format == "qcow2" and spec.allocation in ("metadata", "full")


def _volume_format(field: str, value: str | None) -> VolumeFormat:
    check_choice(field, value, get_args(VolumeFormat))
    return cast(VolumeFormat, value)


def _source_format(value: str | None) -> VolumeFormat:
    return _volume_format("The source's format", value)


def _known_capacity(capacity: int | None, path: str) -> int:
    if capacity is None:
        raise InvalidOperation(f"The host did not report the size of {path}.")
    return capacity


def _at_least(size: int, requested: int | None, what: str) -> int:
    if requested is None:
        return size
    check_capacity("Capacity", requested)
    require(
        requested >= size,
        f"{what} cannot be smaller than its source ({human_size(size)}); got {human_size(requested)}.",
    )
    return requested


# Changes that must not hide the error that caused them


def _delete(vol: Volume, path: str) -> bool:
    try:
        vol.delete(0)
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        if code in _NO_VOLUME:
            return False
        raw = _raw(exc)
        if code == libvirt.VIR_ERR_OPERATION_INVALID or any(word in raw.lower() for word in _IN_USE_WORDS):
            message = f"The volume {path} is in use, so the host did not delete it ({raw})."
            raise InvalidOperation(message, code=code, raw=raw) from exc
        raise
    return True


def _delete_quietly(vol: Volume) -> None:
    # Called while another error propagates; that error is the one the caller must see.
    with suppress(libvirt.libvirtError):
        vol.delete(0)


def _abort_quietly(stream: Stream) -> None:
    with suppress(libvirt.libvirtError):
        stream.abort()


def _refresh_if_possible(pool_obj: Pool) -> bool:
    """Rescan the pool; False when it is gone or stopped. A pool building a volume refuses to be
    rescanned, but libvirt knows that volume already, so its listing is still right."""
    try:
        pool_obj.refresh(0)
    except libvirt.libvirtError as exc:
        if _busy(exc):
            return True
        if exc.get_error_code() in _POOL_GONE:
            return False
        raise
    return True


def _busy(exc: libvirt.libvirtError) -> bool:
    return "asynchronous jobs" in _raw(exc)


def _raw(exc: libvirt.libvirtError) -> str:
    return str(exc.get_error_message() or exc).strip()


def _record(vol: Volume, pool_uuid: str) -> VolumeRecord:
    """A VolumeRecord exactly as the inventory builds one."""
    return volume_record(vol, vol.XMLDesc(0), pool_uuid)
