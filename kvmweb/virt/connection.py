"""One cached libvirt connection per host and process, opened with a deadline.

A connection is opened in a helper thread and waited for with a timeout, because libvirt's open
can hang for minutes on a host that drops packets. Each host has its own lock, so a slow host
only ever delays requests for that same host.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import libvirt

from kvmweb.virt.errors import HostUnreachable, Unsupported, translate, translated
from kvmweb.virt.eventloop import event_loop_running
from kvmweb.virt.target import HostTarget

Connection: TypeAlias = Any  # a libvirt.virConnect; the libvirt module ships no type hints


def _silence(_context: object, _error: object) -> None:
    """Errors reach us as exceptions; libvirt's default handler would also print them."""


libvirt.registerErrorHandler(_silence, None)

# Indirection so tests can stand in a slow host; everything else uses libvirt.open.
_opener: Callable[[str], Connection] = libvirt.open


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    open_timeout: float = 10.0
    keepalive_interval: int = 5
    keepalive_count: int = 3


_settings = ConnectionSettings()


def configure(
    *,
    open_timeout: float | None = None,
    keepalive_interval: int | None = None,
    keepalive_count: int | None = None,
) -> ConnectionSettings:
    """Change the process-wide connection settings; None leaves a value as it is."""
    global _settings
    current = _settings
    _settings = ConnectionSettings(
        open_timeout=current.open_timeout if open_timeout is None else open_timeout,
        keepalive_interval=current.keepalive_interval if keepalive_interval is None else keepalive_interval,
        keepalive_count=current.keepalive_count if keepalive_count is None else keepalive_count,
    )
    return _settings


class _OpenAttempt:
    """One libvirt open running in its own thread; a late result is closed, not leaked."""

    def __init__(self, uri: str, settings: ConnectionSettings) -> None:
        self.uri = uri
        self.settings = settings
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        self._conn: Connection | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        conn: Connection | None = None
        error: BaseException | None = None
        try:
            conn = _opener(self.uri)
            _enable_keepalive(conn, self.settings)
        except libvirt.libvirtError as exc:
            error = translate(exc)
        except Exception as exc:
            # Anything else is handed to the waiting caller to raise in its own thread.
            error = exc
        with self._lock:
            if self._abandoned and conn is not None:
                _close_quietly(conn)
            self._conn, self._error = conn, error
            self.done.set()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            if self._conn is not None:
                _close_quietly(self._conn)

    def result(self) -> Connection:
        if self._error is not None:
            raise self._error
        return self._conn


def _enable_keepalive(conn: Connection, settings: ConnectionSettings) -> None:
    if not event_loop_running():
        return
    try:
        with translated():
            conn.setKeepAlive(settings.keepalive_interval, settings.keepalive_count)
    except Unsupported:
        pass  # Local drivers such as test:// have no keepalive, and need none.


def _open_with_deadline(target: HostTarget, settings: ConnectionSettings) -> Connection:
    attempt = _OpenAttempt(target.effective_uri(), settings)
    name = f"libvirt-open {target.uri}"
    threading.Thread(target=attempt.run, name=name, daemon=True).start()
    if not attempt.done.wait(settings.open_timeout):
        attempt.abandon()
        raise HostUnreachable(f"The host did not answer within {settings.open_timeout:g} s ({target.uri}).")
    return attempt.result()


def _alive(conn: Connection) -> bool:
    try:
        return bool(conn.isAlive() == 1)
    except libvirt.libvirtError:
        return False


# isAlive() only knows what the socket has noticed: after the daemon restarts, a connection idle
# since then still looks alive until a call fails. One cheap round trip after a pause catches it.
PROBE_AFTER_IDLE = 1.0


def _answers(conn: Connection) -> bool:
    try:
        conn.getLibVersion()
    except libvirt.libvirtError:
        return False
    return True


def _close_quietly(conn: Connection) -> None:
    # Already closed or already broken: either way it is gone.
    with suppress(libvirt.libvirtError):
        conn.close()


def _close_in_background(conn: Connection) -> None:
    # Closing a remote connection sends a message to the host, which can hang if the host is gone.
    threading.Thread(target=_close_quietly, args=(conn,), name="libvirt-close", daemon=True).start()


class _Cache:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._conns: dict[HostTarget, Connection] = {}
        self._used: dict[HostTarget, float] = {}
        self._target_locks: dict[HostTarget, threading.Lock] = {}

    def get(self, target: HostTarget, settings: ConnectionSettings) -> Connection:
        with self._lock:
            target_lock = self._target_locks.setdefault(target, threading.Lock())
        if not target_lock.acquire(timeout=settings.open_timeout):
            raise HostUnreachable(
                f"Still connecting to {target.uri} for another request; gave up after {settings.open_timeout:g} s."
            )
        try:
            return self._reuse_or_open(target, settings)
        finally:
            target_lock.release()

    def _reuse_or_open(self, target: HostTarget, settings: ConnectionSettings) -> Connection:
        with self._lock:
            cached = self._conns.get(target)
            idle = time.monotonic() - self._used.get(target, 0.0)
        if cached is not None and _alive(cached) and (idle < PROBE_AFTER_IDLE or _answers(cached)):
            self._touch(target)
            return cached
        if cached is not None:
            self.drop(target, cached)
        conn = _open_with_deadline(target, settings)
        with self._lock:
            self._conns[target] = conn
        self._touch(target)
        return conn

    def _touch(self, target: HostTarget) -> None:
        with self._lock:
            self._used[target] = time.monotonic()

    def drop(self, target: HostTarget, conn: Connection) -> None:
        """Forget ``conn`` unless another thread has already replaced it."""
        with self._lock:
            if self._conns.get(target) is not conn:
                return
            del self._conns[target]
        _close_in_background(conn)

    def close_all(self) -> None:
        with self._lock:
            conns = list(self._conns.values())
            self._conns.clear()
        for conn in conns:
            _close_quietly(conn)


_cache_guard = threading.Lock()
_cache = _Cache()


def _current_cache() -> _Cache:
    global _cache
    with _cache_guard:
        if _cache.pid != os.getpid():
            # After a fork (Celery's prefork pool) the child shares the parent's sockets: it must
            # open its own connections and never close the parent's.
            _cache = _Cache()
        return _cache


def get_connection(target: HostTarget, *, timeout: float | None = None) -> Connection:
    """The cached, live connection to ``target``, opened (within the timeout) if needed."""
    settings = _settings if timeout is None else replace(_settings, open_timeout=timeout)
    return _current_cache().get(target, settings)


def open_private_connection(target: HostTarget, *, timeout: float | None = None) -> Connection:
    """A new connection to ``target``, neither cached nor shared; the caller closes it
    (``close_private_connection``). For a blocking stream: a thread blocked in its recv() can stall
    the calls other threads make on the same connection until data arrives."""
    settings = _settings if timeout is None else replace(_settings, open_timeout=timeout)
    return _open_with_deadline(target, settings)


def close_private_connection(conn: Connection) -> None:
    _close_in_background(conn)


@contextmanager
def connect(target: HostTarget, *, timeout: float | None = None) -> Iterator[Connection]:
    """Yield a connection; libvirt errors inside become VirtErrors, and a broken one is dropped."""
    conn = get_connection(target, timeout=timeout)
    try:
        with translated():
            yield conn
    except HostUnreachable:
        _current_cache().drop(target, conn)
        raise


def close_all() -> None:
    """Close every cached connection of this process (tests and shutdown)."""
    _current_cache().close_all()
