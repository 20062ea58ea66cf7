"""The serial console adapter: errors in plain words, and the reader/writer threads around a stream.

The test driver has no virDomainOpenConsole, so the threads are driven through a stand-in stream
(``FakeStream``, with libvirt's blocking semantics: ``recv`` waits, ``abort`` wakes it with an
error, ``b""`` is the end). The real stream against a real guest is in
tests/integration/test_serial_lab.py.
"""

from __future__ import annotations

import queue
import threading
import uuid as uuidlib
from typing import Any

import pytest

from kvmweb import virt
from kvmweb.virt import console
from kvmweb.virt.console import (
    BUSY,
    NO_DEVICE,
    NOT_PTY,
    NOT_RUNNING,
    ConsoleBusy,
    NoSerialConsole,
    SerialConsole,
    console_error,
    open_serial_console,
)

# libvirt's error codes (part of its stable ABI).
VIR_ERR_INTERNAL_ERROR = 1
VIR_ERR_OPERATION_FAILED = 9
VIR_ERR_OPERATION_INVALID = 55
LibvirtError = console.libvirt.libvirtError  # the class libvirt raises, as the adapter sees it
TEST_DOMAIN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"
_ABORT = object()


def _ignore(*_args: object) -> None:
    pass


# --- opening: what the user is told -------------------------------------------------------------------


def test_test_driver_has_no_consoles_and_says_so(target: virt.HostTarget) -> None:
    with pytest.raises(virt.Unsupported, match=r"^This host cannot open serial consoles"):
        open_serial_console(target, TEST_DOMAIN_UUID, on_data=_ignore, on_closed=_ignore)


def test_unknown_domain_is_not_found(target: virt.HostTarget) -> None:
    with pytest.raises(virt.NotFound):
        open_serial_console(target, str(uuidlib.uuid4()), on_data=_ignore, on_closed=_ignore)


def test_a_bad_uuid_is_refused_before_libvirt(target: virt.HostTarget) -> None:
    with pytest.raises(virt.InvalidArgument, match="is not a virtual machine UUID"):
        open_serial_console(target, "../etc", on_data=_ignore, on_closed=_ignore)


@pytest.mark.parametrize(
    ("error", "kind", "message"),
    [
        (
            virt.InvalidOperation(
                "x", code=VIR_ERR_OPERATION_INVALID, raw="Requested operation is not valid: domain is not running"
            ),
            virt.InvalidOperation,
            NOT_RUNNING,
        ),
        (
            virt.VirtError(
                "x",
                code=VIR_ERR_OPERATION_FAILED,
                raw="operation failed: Active console session exists for this domain",
            ),
            ConsoleBusy,
            BUSY,
        ),
        (
            virt.VirtError("x", code=VIR_ERR_INTERNAL_ERROR, raw="internal error: cannot find character device <null>"),
            NoSerialConsole,
            NO_DEVICE,
        ),
        (
            virt.VirtError(
                "x", code=VIR_ERR_INTERNAL_ERROR, raw="internal error: character device serial0 is not using a PTY"
            ),
            NoSerialConsole,
            NOT_PTY,
        ),
    ],
)
def test_open_failures_get_plain_messages(error: virt.VirtError, kind: type[virt.VirtError], message: str) -> None:
    translated = console_error(error)
    assert type(translated) is kind
    assert translated.message == message
    assert translated.raw == error.raw and translated.code == error.code


def test_a_busy_console_is_an_invalid_operation_and_no_device_is_unsupported() -> None:
    assert issubclass(ConsoleBusy, virt.InvalidOperation)
    assert issubclass(NoSerialConsole, virt.Unsupported)


def test_other_errors_pass_through_unchanged() -> None:
    error = virt.HostUnreachable("The host could not be reached.", code=38, raw="connection closed")
    assert console_error(error) is error


# --- the threads around an open stream ---------------------------------------------------------------


class FakeStream:
    """libvirt's blocking stream, as SerialConsole uses it."""

    def __init__(self) -> None:
        self.incoming: queue.Queue[Any] = queue.Queue()
        self.sent = bytearray()
        self.sent_more = threading.Condition()
        self.aborted = threading.Event()
        self.finished = threading.Event()

    def recv(self, _size: int) -> bytes:
        item = self.incoming.get(timeout=10)
        if item is _ABORT:
            raise LibvirtError("stream aborted")
        if isinstance(item, BaseException):
            raise item
        return bytes(item)

    def send(self, data: bytes) -> int:
        with self.sent_more:
            self.sent += data
            self.sent_more.notify_all()
        return len(data)

    def abort(self) -> None:
        self.aborted.set()
        self.incoming.put(_ABORT)

    def finish(self) -> None:
        self.finished.set()

    def wait_sent(self, expected: bytes) -> bytes:
        with self.sent_more:
            self.sent_more.wait_for(lambda: len(self.sent) >= len(expected), timeout=5)
            return bytes(self.sent)


class FakeDomain:
    def __init__(self, active: bool) -> None:
        self.active = active

    def isActive(self) -> int:
        return int(self.active)


class FakeConnection:
    def __init__(self, *, alive: bool = True, active: bool = True) -> None:
        self.alive = alive
        self.active = active
        self.closed = threading.Event()

    def close(self) -> int:
        self.closed.set()
        return 0

    def isAlive(self) -> int:
        return int(self.alive)

    def lookupByUUIDString(self, _uuid: str) -> FakeDomain:
        return FakeDomain(self.active)


class Recorder:
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.reasons: list[str] = []
        self.got_data = threading.Condition()

    def on_data(self, data: bytes) -> None:
        with self.got_data:
            self.data.append(data)
            self.got_data.notify_all()

    def on_closed(self, reason: str) -> None:
        self.reasons.append(reason)

    def wait_data(self, count: int) -> list[bytes]:
        with self.got_data:
            self.got_data.wait_for(lambda: len(self.data) >= count, timeout=5)
            return list(self.data)


def opened(stream: FakeStream, conn: FakeConnection | None = None) -> tuple[SerialConsole, Recorder]:
    recorder = Recorder()
    serial = SerialConsole(str(uuidlib.uuid4()), stream, conn or FakeConnection(), recorder.on_data, recorder.on_closed)
    serial.start()
    return serial, recorder


def test_output_arrives_in_order_and_keys_are_sent() -> None:
    stream = FakeStream()
    serial, recorder = opened(stream)
    stream.incoming.put(b"login: ")
    stream.incoming.put(b"root\r\n")
    assert recorder.wait_data(2) == [b"login: ", b"root\r\n"]

    serial.write(b"echo hi\r")
    serial.write(b"")
    assert stream.wait_sent(b"echo hi\r") == b"echo hi\r"
    serial.close()
    assert serial.ended.wait(5)
    assert (serial.bytes_read, serial.bytes_written) == (13, 8)


def test_close_aborts_the_stream_and_reports_closed_once() -> None:
    stream = FakeStream()
    conn = FakeConnection()
    serial, recorder = opened(stream, conn)
    serial.close()
    serial.close()
    assert serial.ended.wait(5)
    assert conn.closed.wait(5), "the console's own connection is closed with it"
    assert stream.aborted.is_set()
    assert recorder.reasons == ["closed"] and serial.reason == "closed" and serial.closed
    with pytest.raises(virt.InvalidOperation, match="closed"):
        serial.write(b"x")


def test_end_of_stream_means_the_console_ended() -> None:
    stream = FakeStream()
    serial, recorder = opened(stream)
    stream.incoming.put(b"")
    assert serial.ended.wait(5)
    assert recorder.reasons == ["ended"]
    assert stream.finished.is_set()
    assert stream.aborted.wait(5), "the writer thread still ends, releasing the stream"


def test_failure_with_the_domain_still_running_means_someone_took_it() -> None:
    stream = FakeStream()
    serial, recorder = opened(stream, FakeConnection(alive=True, active=True))
    stream.incoming.put(LibvirtError("stream had I/O failure"))
    assert serial.ended.wait(5)
    assert recorder.reasons == ["taken"]


def test_failure_with_a_dead_connection_means_lost() -> None:
    stream = FakeStream()
    serial, recorder = opened(stream, FakeConnection(alive=False))
    stream.incoming.put(LibvirtError("connection closed"))
    assert serial.ended.wait(5)
    assert recorder.reasons == ["lost"]


def test_a_runaway_paste_is_refused_not_buffered() -> None:
    stream = FakeStream()
    block = threading.Event()
    real_send = stream.send

    def slow_send(data: bytes) -> int:
        block.wait(5)  # the guest is not reading
        return real_send(data)

    stream.send = slow_send  # type: ignore[method-assign]
    serial, _recorder = opened(stream)
    serial.write(b"a" * console.MAX_PENDING)
    with pytest.raises(virt.InvalidOperation, match="not reading"):
        serial.write(b"b")
    block.set()
    assert len(stream.wait_sent(b"a" * console.MAX_PENDING)) == console.MAX_PENDING
    serial.close()
    assert serial.ended.wait(5)


def test_a_console_opens_a_connection_of_its_own_and_a_refused_one_closes_it(target, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A reader blocked in recv() stalled other calls on a shared connection (a second console's lookup hung)."""
    from kvmweb.virt import connection
    from kvmweb.virt import console as console_module

    shared = connection.get_connection(target)
    opened_conns, closed_conns = [], []
    real_open = console_module.open_private_connection

    def open_recorded(t: virt.HostTarget) -> Any:
        opened_conns.append(real_open(t))
        return opened_conns[-1]

    monkeypatch.setattr(console_module, "open_private_connection", open_recorded)
    monkeypatch.setattr(console_module, "close_private_connection", closed_conns.append)

    with pytest.raises(virt.Unsupported):
        open_serial_console(target, TEST_DOMAIN_UUID, on_data=_ignore, on_closed=_ignore)

    assert len(opened_conns) == 1 and opened_conns[0] is not shared
    assert closed_conns == opened_conns
    opened_conns[0].close()
