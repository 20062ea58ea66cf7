"""A domain's serial console as a byte stream (``virDomainOpenConsole``), served by two threads.

``open_serial_console(target, uuid, on_data=..., on_closed=...)`` opens the domain's primary console
(its first ``<console>``, normally ``serial0``) on a libvirt stream and returns a ``SerialConsole``:

- a reader thread blocks in ``stream.recv()`` and hands every chunk to ``on_data(bytes)``;
- a writer thread sends what ``write(bytes)`` queued, so ``write()`` never blocks its caller;
- ``close()`` never blocks either: the writer thread aborts the stream, which wakes the reader.
- ``on_closed(reason)`` is called once, from the reader thread, when the stream ends:
  ``"closed"`` (``close()`` was called), ``"ended"`` (the console ended: the guest stopped),
  ``"taken"`` (another client took the console over with force) or ``"lost"`` (the connection failed).

Both callbacks run in the reader thread: an asyncio caller hands the data on with
``loop.call_soon_threadsafe``. Blocking threads rather than a non-blocking stream with
``eventAddCallback``: those callbacks need libvirt's event loop, and a process has exactly one kind
(``kvmweb.virt.eventloop``), whereas two daemon threads per open console work in any process (the
ASGI server, a worker, a test) without registering anything.

SAFE, not FORCE, by default: libvirt lets one client hold a domain's console, and FORCE silently
cuts off whoever holds it now (an administrator in ``virsh console``, or another kvmweb server
process). So a busy console is refused with ``ConsoleBusy``, and taking it over is an explicit
choice (``force=True``), offered only to people who may type.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import libvirt

from kvmweb.virt import lookup
from kvmweb.virt.connection import Connection, close_private_connection, open_private_connection
from kvmweb.virt.errors import InvalidOperation, Unsupported, VirtError, translated
from kvmweb.virt.target import HostTarget

logger = logging.getLogger(__name__)

OnData = Callable[[bytes], None]
OnClosed = Callable[[str], None]
Stream = Any  # a libvirt.virStream; it never leaves this module

CHUNK = 64 * 1024
# Bytes queued for the guest but not sent yet; beyond this write() refuses (a runaway paste).
MAX_PENDING = 1024 * 1024

CLOSED, ENDED, TAKEN, LOST = "closed", "ended", "taken", "lost"


class ConsoleBusy(InvalidOperation):
    """Another client holds the domain's console (``virsh console``, another kvmweb process)."""


class NoSerialConsole(Unsupported):
    """The domain has no console device that can be opened as a stream (none, or not a pty)."""


NOT_RUNNING = "The virtual machine is not running: start it to use its serial console."
BUSY = (
    "Another client is connected to this serial console (virsh console, or another kvmweb server); "
    "take it over to use it here."
)
NO_DEVICE = "This virtual machine has no serial console: add a serial device (type pty) to use it."
NOT_PTY = "This virtual machine's serial console is not a pty, so it cannot be opened from here."


def console_error(error: VirtError) -> VirtError:
    """The plain message for a translated ``openConsole`` failure."""
    raw = error.raw.lower()
    if isinstance(error, InvalidOperation) and "not running" in raw:
        return InvalidOperation(NOT_RUNNING, code=error.code, raw=error.raw)
    if error.code == libvirt.VIR_ERR_OPERATION_FAILED and "active console session" in raw:
        return ConsoleBusy(BUSY, code=error.code, raw=error.raw)
    if error.code == libvirt.VIR_ERR_INTERNAL_ERROR:
        if "not using a pty" in raw:
            return NoSerialConsole(NOT_PTY, code=error.code, raw=error.raw)
        if "cannot find" in raw and ("character device" in raw or "console" in raw):
            return NoSerialConsole(NO_DEVICE, code=error.code, raw=error.raw)
    if isinstance(error, Unsupported):
        return Unsupported(
            f"This host cannot open serial consoles ({error.raw or error.message}).", code=error.code, raw=error.raw
        )
    return error


class SerialConsole:
    """An open console stream of one domain. Thread-safe; ``write()`` and ``close()`` never block."""

    def __init__(self, uuid: str, stream: Stream, conn: Connection, on_data: OnData, on_closed: OnClosed) -> None:
        self.uuid = uuid
        self._stream = stream
        self._conn = conn
        self._on_data = on_data
        self._on_closed = on_closed
        self._lock = threading.Lock()
        self._closing = False
        self._reason: str | None = None
        self._pending = 0
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.bytes_read = 0
        self.bytes_written = 0
        self.ended = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"serial-read {uuid}", daemon=True)
        self._writer = threading.Thread(target=self._write, name=f"serial-write {uuid}", daemon=True)

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closing or self._reason is not None

    @property
    def reason(self) -> str | None:
        """Why the stream ended (see the module's docstring), or None while it is open."""
        with self._lock:
            return self._reason

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the guest. InvalidOperation once closed, or with too much unsent."""
        if not data:
            return
        with self._lock:
            if self._closing or self._reason is not None:
                raise InvalidOperation("The serial console is closed.")
            if self._pending + len(data) > MAX_PENDING:
                raise InvalidOperation("The guest is not reading its serial console fast enough; input dropped.")
            self._pending += len(data)
        self._outbox.put(bytes(data))

    def close(self) -> None:
        """Stop the stream; ``on_closed("closed")`` follows unless it had already ended."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._outbox.put(None)

    def __repr__(self) -> str:
        return f"<SerialConsole {self.uuid} {self.reason or 'open'}>"

    # The threads.

    def _read(self) -> None:
        reason = ENDED
        try:
            while True:
                data = self._stream.recv(CHUNK)
                if isinstance(data, int):  # -2: would block; only on non-blocking streams
                    continue
                if not data:
                    with suppress(libvirt.libvirtError):
                        self._stream.finish()
                    break
                self.bytes_read += len(data)
                try:
                    self._on_data(bytes(data))
                except Exception:
                    logger.exception("on_data failed for the serial console of %s", self.uuid)
        except libvirt.libvirtError as exc:
            reason = self._why_failed(exc)
        except Exception:
            logger.exception("Reading the serial console of %s failed", self.uuid)
            reason = LOST
        self._finish(reason)

    def _why_failed(self, exc: libvirt.libvirtError) -> str:
        with self._lock:
            if self._closing:
                return CLOSED
        logger.info("The serial console of %s failed: %s", self.uuid, exc)
        try:
            alive = self._conn.isAlive() == 1
            active = alive and lookup.domain(self._conn, self.uuid).isActive() == 1
        except (libvirt.libvirtError, VirtError):
            return LOST
        if not alive:
            return LOST
        # A live connection and a running domain: someone else opened the console with force.
        return TAKEN if active else ENDED

    def _write(self) -> None:
        while True:
            data = self._outbox.get()
            if data is None:
                break
            try:
                sent = 0
                while sent < len(data):
                    count = self._stream.send(data[sent:])
                    if count < 0:  # -2: would block; only on non-blocking streams
                        continue
                    sent += count
                self.bytes_written += sent
            except libvirt.libvirtError as exc:
                logger.info("Writing to the serial console of %s failed: %s", self.uuid, exc)
            finally:
                with self._lock:
                    self._pending -= len(data)
        # close() was called, or the reader ended: abort wakes a reader blocked in recv(). The reader
        # needs the connection no more (after close() it does not ask why the stream failed).
        with suppress(libvirt.libvirtError):
            self._stream.abort()
        close_private_connection(self._conn)

    def _finish(self, reason: str) -> None:
        with self._lock:
            if self._reason is not None:
                return
            self._reason = reason
        self._outbox.put(None)  # let the writer thread end
        self.ended.set()
        try:
            self._on_closed(reason)
        except Exception:
            logger.exception("on_closed failed for the serial console of %s", self.uuid)


def open_serial_console(
    target: HostTarget,
    uuid: str,
    *,
    on_data: OnData,
    on_closed: OnClosed,
    force: bool = False,
    device: str | None = None,
) -> SerialConsole:
    """Open the domain's console (``device`` names another one, e.g. ``"serial1"``). Blocks: call it in a thread.

    Raises InvalidOperation (not running), ConsoleBusy (another client holds it; ``force=True``
    takes it over), NoSerialConsole, NotFound, HostUnreachable or another VirtError.
    """
    # A console of its own: its reader blocks in recv(), which stalled other calls on a shared
    # connection (seen: a second console's domain lookup hung behind the first one's reader).
    conn = open_private_connection(target)
    stream: Stream = None
    try:
        with translated():
            dom = lookup.domain(conn, uuid)
            stream = conn.newStream(0)
            flags = libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else libvirt.VIR_DOMAIN_CONSOLE_SAFE
            dom.openConsole(device, stream, flags)
    except VirtError as exc:
        if stream is not None:
            with suppress(libvirt.libvirtError):
                stream.abort()
        close_private_connection(conn)
        raise console_error(exc) from exc
    console = SerialConsole(lookup.canonical_uuid(uuid, "virtual machine"), stream, conn, on_data, on_closed)
    console.start()
    return console
