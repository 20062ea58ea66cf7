"""A compressed qcow2 copy of a volume, made through the worker.

libvirt copies a volume on the host (createXMLFrom) but cannot compress the copy: that call has no
compression option. So this copy streams instead. The source's file comes down a libvirt stream
into the worker's temporary directory, ``qemu-img convert -c`` compresses it there, and the image
goes back up a stream into a new volume. Streams work the same over a remote connection, so no file
system but the worker's own is involved. Both temporary files are removed however the copy ends,
and so is a half-made volume: it is all or nothing.

``compressed_copy`` reports ``progress(percent, message)`` on one scale across its three phases,
each time the percent moves; raising from it stops the copy (qemu-img included) and cleans up.
"""

from __future__ import annotations

import codecs
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from kvmweb.virt import volumes
from kvmweb.virt.errors import AlreadyExists, InvalidOperation, NotFound, OperationTimeout
from kvmweb.virt.target import HostTarget
from kvmweb.virt.types import VolumeRecord
from kvmweb.virt.xml.volume_spec import human_size

Report = Callable[[int, str], None]

# The command, found on the worker's PATH; a module setting so a test can swap in one that fails.
QEMU_IMG = "qemu-img"
# Runs of zeros this long are skipped, not written, so a thin source stays thin in the temporary file.
ZERO_RUN = 64 * 1024
_ZEROS = bytes(ZERO_RUN)
_MIB = 1024**2
# How much of what qemu-img says besides its progress is kept for the error message.
_ERROR_TAIL = 600


@dataclass(frozen=True, slots=True)
class Phase:
    """A phase's share of the one progress bar, in percent."""

    start: int
    end: int

    def at(self, done: float, total: float) -> int:
        share = min(done / total, 1.0) if total > 0 else 0.0
        return self.start + int((self.end - self.start) * share)


DOWNLOAD, COMPRESS, UPLOAD = Phase(0, 40), Phase(40, 70), Phase(70, 100)


def compressed_copy(
    target: HostTarget,
    pool: str,
    source_path: str,
    name: str,
    *,
    work_dir: Path,
    progress: Report,
    timeout: float,
) -> VolumeRecord:
    """A new qcow2 volume ``name`` in ``pool`` holding the data of the raw or qcow2 volume at
    ``source_path``, compressed; the source is left as it is. ``work_dir`` holds the temporary files;
    qemu-img is stopped when it is still running ``timeout`` seconds from now."""
    deadline = time.monotonic() + timeout
    source = _source(target, source_path)
    if volumes.volume_in_pool(target, pool, name) is not None:
        raise AlreadyExists(f"Storage pool {pool} already has a volume named {name}.")
    _require_work_space(work_dir, source)
    report = _Reports(progress)
    with _work_files(work_dir) as (downloaded, compressed):
        _download(target, source, downloaded, report)
        _compress(downloaded, compressed, source, report, deadline)
        return _upload(target, pool, name, compressed, source, report)


# The three phases


def _download(target: HostTarget, source: VolumeRecord, into: Path, report: _Reports) -> None:
    # A raw volume comes down as the guest sees it, a qcow2 one as its file.
    path = source.path or ""
    total = (source.capacity or 0) if source.format == "raw" else volumes.volume_file_size(target, path)
    done = 0
    with into.open("r+b") as out, closing(volumes.download_volume(target, path)) as chunks:
        for chunk in chunks:
            _write_sparse(out, chunk)
            done += len(chunk)
            report(DOWNLOAD, done, total, f"Downloading {source.name}: {human_size(done)} of {human_size(total)}")
        out.truncate(done)
    if source.format == "qcow2":
        _require_standalone(into, source)


def _compress(source_file: Path, out: Path, source: VolumeRecord, report: _Reports, deadline: float) -> None:
    args = [QEMU_IMG, "convert", "-p", "-c", "-f", source.format or "raw", "-O", "qcow2", "-o", "compat=1.1"]
    try:
        process = subprocess.Popen(
            [*args, str(source_file), str(out)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        message = f"The worker cannot run {QEMU_IMG} ({exc.strerror}); install qemu-utils where the worker runs."
        raise InvalidOperation(message) from exc
    output = QemuImgOutput()
    try:
        _follow(process, output, report, source.name, deadline)
        status = process.wait()
    finally:
        # Still running here means the copy was stopped or timed out: qemu-img must not go on writing.
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    if status != 0:
        reason = output.error or "it gave no reason"
        raise InvalidOperation(f"qemu-img could not compress {source.name} (exit status {status}): {reason}")


def _upload(
    target: HostTarget, pool: str, name: str, image: Path, source: VolumeRecord, report: _Reports
) -> VolumeRecord:
    size = image.stat().st_size

    def sent(done: int, total: int) -> None:
        report(UPLOAD, done, total, f"Uploading {name}: {human_size(done)} of {human_size(total)}")

    with image.open("rb") as data:
        chunks = iter(partial(data.read, volumes.TRANSFER_CHUNK), b"")
        record = volumes.upload_volume(target, pool, name, chunks, size=size, format="qcow2", progress=sent)
    # The host reads the format from the uploaded data; a pool that does not would show a guest the
    # qcow2 image itself as its disk, so such a copy is not kept.
    if record.format != "qcow2" or (record.capacity or 0) < (source.capacity or 0):
        volumes.delete_volume(target, record.path or "")
        raise InvalidOperation(
            f"Storage pool {pool} did not take {name} as a qcow2 image of {human_size(source.capacity or 0)} "
            f"(it saw {record.format or 'an unknown format'}), so the copy was deleted again."
        )
    return record


# qemu-img's output


class QemuImgOutput:
    """What ``qemu-img convert -p`` prints, fed as it arrives: progress reports such as
    ``"    (12.34/100%)\\r"``, and anything else, which is what it has to say about an error."""

    _PROGRESS = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")

    def __init__(self) -> None:
        # A read may end inside a character of an error message; the decoder keeps its first bytes.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._other: list[str] = []

    def feed(self, data: bytes) -> float | None:
        """The last percent completed that ``data`` reports in full, if any."""
        *complete, self._partial = re.split(r"[\r\n]", self._partial + self._decoder.decode(data))
        latest = None
        for piece in complete:
            latest = self._take(piece, latest)
        return latest

    def close(self) -> None:
        self._take(self._partial + self._decoder.decode(b"", final=True), None)
        self._partial = ""

    @property
    def error(self) -> str:
        return " ".join(self._other)[-_ERROR_TAIL:]

    def _take(self, piece: str, latest: float | None) -> float | None:
        text = piece.strip()
        found = self._PROGRESS.fullmatch(text)
        if found:
            return float(found[1])
        if text:
            self._other.append(text)
        return latest


def _follow(
    process: subprocess.Popen[bytes], output: QemuImgOutput, report: _Reports, what: str, deadline: float
) -> None:
    """Read qemu-img's output until it closes it, reporting its progress; stop at the deadline."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OperationTimeout(f"Compressing {what} took longer than the operation may run; qemu-img was stopped.")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        data = os.read(fd, 4096)
        if not data:
            output.close()
            return
        percent = output.feed(data)
        if percent is not None:
            report(COMPRESS, percent, 100, f"Compressing {what}: {percent:.0f}%")


# Checks and the temporary files


def _source(target: HostTarget, path: str) -> VolumeRecord:
    record = volumes.volume_by_path(target, path)
    if record is None:
        raise NotFound(f"No storage pool of the host has a volume at {path}.")
    if record.encryption:
        raise InvalidOperation(f"The volume {path} is encrypted (LUKS); kvmweb does not let it be copied or converted.")
    if record.format not in ("raw", "qcow2"):
        raise InvalidOperation(
            f"The volume {path} is {record.format or 'of unknown format'}; only raw and qcow2 are compressed."
        )
    if record.backing_path:
        raise InvalidOperation(_BACKED.format(path=path))
    return record


_BACKED = (
    "The volume {path} is built on a backing file, and a compressed copy is made from its own file alone. "
    "Copy it without compression first (that copy stands alone), then compress the copy."
)


def _require_standalone(path: Path, source: VolumeRecord) -> None:
    # Checked again on the bytes themselves: qemu-img on the worker would otherwise open whatever
    # file of the worker the header names.
    with path.open("rb") as image:
        if not volumes.standalone_qcow2(image.read(512)):
            raise InvalidOperation(_BACKED.format(path=source.path))


def _require_work_space(work_dir: Path, source: VolumeRecord) -> None:
    """The downloaded file takes about the source's allocation (zeros are skipped); the compressed
    image at most the data that is there, plus its tables."""
    capacity = source.capacity or 0
    allocation = source.allocation or capacity
    needed = allocation + min(allocation, capacity) + capacity // 4096 + _MIB
    free = shutil.disk_usage(work_dir).free
    if needed > free:
        raise InvalidOperation(
            f"The worker's temporary directory {work_dir} has {human_size(free)} free, and compressing "
            f"{source.name} may need {human_size(needed)} there. Free some space, or point the worker's TMPDIR "
            "at a larger disk."
        )


@contextmanager
def _work_files(work_dir: Path) -> Iterator[tuple[Path, Path]]:
    made: list[Path] = []
    try:
        for suffix in (".download", ".qcow2"):
            handle, name = tempfile.mkstemp(prefix="kvmweb-compress-", suffix=suffix, dir=work_dir)
            os.close(handle)
            made.append(Path(name))
        yield made[0], made[1]
    finally:
        for path in made:
            path.unlink(missing_ok=True)


def _write_sparse(out: IO[bytes], chunk: bytes) -> None:
    view = memoryview(chunk)
    for start in range(0, len(view), ZERO_RUN):
        piece = view[start : start + ZERO_RUN]
        if piece == _ZEROS[: len(piece)]:
            out.seek(len(piece), os.SEEK_CUR)
        else:
            out.write(piece)


class _Reports:
    """Forwards a report each time the percent moves, or a new phase starts: about a hundred in all,
    however small the chunks."""

    def __init__(self, progress: Report) -> None:
        self._progress = progress
        self._last: tuple[Phase, int] | None = None

    def __call__(self, phase: Phase, done: float, total: float, message: str) -> None:
        percent = phase.at(done, total)
        if (phase, percent) != self._last:
            self._last = (phase, percent)
            self._progress(percent, message)
