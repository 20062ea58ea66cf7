"""libvirt events for the asyncio watcher process: one dedicated connection per host.

The watcher calls ``use_asyncio_event_loop(loop)`` once, then ``open_event_stream()`` per host.
Each stream opens its own connection (never the shared cache, whose connections come and go with
requests), switches keepalive on so a dead peer is noticed within about interval x (count + 1)
seconds, and turns every domain, network and pool event into a ``VirtEvent`` handed to
``on_event`` in the loop's thread. ``on_closed(reason)`` says the connection died under the
stream (``eof``, ``keepalive``, ``error``); the watcher then closes the stream and opens a new one.

libvirt's calls that can block (open, subscribe, close) run in daemon threads, so a dead host
never stalls the loop, and a hung open never holds up interpreter exit as an executor thread
would.

Threads and the loop: libvirt calls its event-loop hooks from whichever thread is talking to it
(a thread opening a connection, a worker thread running an RPC, a thread whose action queues an
event). ``libvirtaio`` touches the asyncio loop directly in those hooks, which asyncio does not
allow from other threads, and in practice an event queued by another thread then sits until the
loop wakes for some unrelated reason. ``_LoopBridge`` is the loop libvirtaio is given: it runs
every loop call on the loop's own thread, in order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import suppress
from functools import partial
from typing import Any, TypeVar, cast

import libvirt
import libvirtaio

from kvmweb.virt import connection, event_names, eventloop
from kvmweb.virt.errors import HostUnreachable, InvalidArgument, Unsupported, translated
from kvmweb.virt.eventloop import ASYNCIO, EventLoopConflict
from kvmweb.virt.target import HostTarget
from kvmweb.virt.types import VirtEvent

logger = logging.getLogger(__name__)

T = TypeVar("T")
OnEvent = Callable[[VirtEvent], None]
OnClosed = Callable[[str], None]
LibvirtObject = Any  # virDomain, virNetwork or virStoragePool, handed to us by libvirt callbacks


class _BridgedTask:
    """A task created on the loop's thread; ``cancel()`` may be called from any thread."""

    __slots__ = ("_bridge", "_coro", "_task")

    def __init__(self, bridge: _LoopBridge, coro: Coroutine[Any, Any, Any]) -> None:
        self._bridge = bridge
        self._coro = coro
        self._task: asyncio.Task[Any] | None = None

    def start(self) -> None:
        self._task = self._bridge.loop.create_task(self._coro)

    def cancel(self) -> bool:
        # Queued after start(), so the task exists by the time this runs.
        self._bridge.submit(self._cancel)
        return True

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()


class _LoopBridge:
    """The loop libvirtaio sees: each call runs on the real loop's thread, in the order made.

    On the loop's thread a call runs at once (after anything queued before it); from any other
    thread it is queued and the loop is woken with ``call_soon_threadsafe``. Only the loop methods
    libvirtaio uses are offered, so a new use shows up as an AttributeError, not a race.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._queue: deque[Callable[[], object]] = deque()

    def alive(self) -> bool:
        return not self.loop.is_closed()

    def has_queued(self) -> bool:
        with self._lock:
            return bool(self._queue)

    def on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def submit(self, action: Callable[[], object]) -> None:
        if self.on_loop_thread():
            self.run_queued()
            action()
            return
        with self._lock:
            self._queue.append(action)
            loop = self.loop
        try:
            loop.call_soon_threadsafe(self.run_queued)
        except RuntimeError:
            # The loop has closed (shutdown): nothing is left to watch, so there is nothing to update.
            logger.debug("libvirt used its event loop after the asyncio loop closed; the call is dropped")

    def run_queued(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                action = self._queue.popleft()
            try:
                action()
            except Exception:
                logger.exception("libvirt event loop update failed")

    # The part of the asyncio loop API that libvirtaio calls.

    def add_reader(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self.submit(lambda: self.loop.add_reader(fd, callback, *args))

    def remove_reader(self, fd: int) -> bool:
        self.submit(lambda: self.loop.remove_reader(fd))
        return True

    def add_writer(self, fd: int, callback: Callable[..., object], *args: Any) -> None:
        self.submit(lambda: self.loop.add_writer(fd, callback, *args))

    def remove_writer(self, fd: int) -> bool:
        self.submit(lambda: self.loop.remove_writer(fd))
        return True

    def create_task(self, coro: Coroutine[Any, Any, Any]) -> _BridgedTask:
        task = _BridgedTask(self, coro)
        self.submit(task.start)
        return task


class _AsyncIOImpl(libvirtaio.virEventAsyncIOImpl):
    """libvirtaio's implementation, with its pending-callback count safe to change from any thread."""

    def __init__(self, loop: _LoopBridge) -> None:
        super().__init__(loop=cast(asyncio.AbstractEventLoop, loop))
        self._count_lock = threading.Lock()

    def _pending_inc(self) -> None:
        with self._count_lock:
            super()._pending_inc()

    def _pending_dec(self) -> None:
        with self._count_lock:
            super()._pending_dec()


_bridge: _LoopBridge | None = None
_impl: _AsyncIOImpl | None = None


def use_asyncio_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Dispatch libvirt's events, timers and keepalives on ``loop`` (the watcher process only).

    libvirt takes one event loop implementation per process, for good. Calling this again with
    the same loop does nothing; with a new loop (a restarted ``asyncio.run``) it moves libvirt to
    it, provided nothing is left on the old one: every EventStream closed, and ``close_all()``
    called if the process used the shared connections. Raises ``EventLoopConflict`` if this
    process registered libvirt's default loop (``register_event_loop()``), or still has libvirt
    work on another asyncio loop.
    """
    global _bridge, _impl
    with eventloop._lock:
        if _bridge is not None and _impl is not None:
            _move_to(_bridge, _impl, loop)
            return
        eventloop.claim(ASYNCIO)
        bridge = _LoopBridge(loop)
        try:
            impl = _AsyncIOImpl(bridge).register()
        except RuntimeError as exc:  # the binding's "Event loop is already registered"
            eventloop._kind = None
            raise EventLoopConflict(
                f"libvirt already has an event loop in this process, not registered by kvmweb ({exc})."
            ) from exc
        _bridge, _impl = bridge, impl
        eventloop._asyncio_alive = bridge.alive


def _move_to(bridge: _LoopBridge, impl: _AsyncIOImpl, loop: asyncio.AbstractEventLoop) -> None:
    if bridge.loop is loop:
        return
    if not impl.is_idle() or bridge.has_queued():
        raise EventLoopConflict(
            "libvirt's asyncio event loop still serves another asyncio loop "
            f"({len(impl.callbacks)} handles or timers live): close every EventStream of that loop and call "
            "close_all() before moving libvirt to a new loop."
        )
    bridge.loop = loop


def _require_event_loop(loop: asyncio.AbstractEventLoop) -> None:
    with eventloop._lock:
        if _bridge is not None and _bridge.loop is loop:
            return
        if eventloop._kind == eventloop.DEFAULT:
            raise EventLoopConflict(
                "Event streams need libvirt's asyncio event loop, but this process runs libvirt's default "
                "one (register_event_loop()); run the watcher in its own process."
            )
    raise EventLoopConflict(
        "Call use_asyncio_event_loop(asyncio.get_running_loop()) before opening event streams on this loop."
    )


class EventStream:
    """A host's events over a connection of their own. Close it with ``await stream.close()``.

    ``subscriptions`` names the event kinds libvirt accepted (metadata changes, network and pool
    events depend on the host's libvirt and drivers). ``closed`` turns true after ``close()`` or
    once libvirt reports the connection lost (``on_closed`` has then been called).
    """

    def __init__(self, target: HostTarget, loop: asyncio.AbstractEventLoop, on_event: OnEvent, on_closed: OnClosed):
        self.target = target
        self.subscriptions: tuple[str, ...] = ()
        self._loop = loop
        self._on_event = on_event
        self._on_closed = on_closed
        self._lock = threading.Lock()
        self._state = "opening"  # opening -> open -> lost / closed
        self._connected = False
        self._conn: connection.Connection | None = None
        self._domain_ids: list[int] = []
        self._network_ids: list[int] = []
        self._pool_ids: list[int] = []

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._state in ("lost", "closed")

    async def close(self, *, timeout: float = 10.0) -> None:
        """Deregister everything and close the connection, in a thread; give up after ``timeout``."""
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
        try:
            await _in_thread(self._disconnect, name=f"libvirt-events-close {self.target.uri}", timeout=timeout)
        except TimeoutError:
            logger.warning("Closing the event connection to %s did not finish in %g s", self.target.uri, timeout)
        # libvirt frees each removed callback from a task on the loop; let those run now.
        for _ in range(3):
            await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"<EventStream {self.target.uri} {self._state}>"

    # Opening and closing, in helper threads.

    def _connect(self, keepalive: tuple[int, int] | None) -> None:
        try:
            with translated():
                conn = connection._opener(self.target.effective_uri())
                with self._lock:
                    self._conn = conn
                    abandoned = self._state == "closed"
                if not abandoned:
                    self._subscribe(conn, keepalive)
        except BaseException:
            self._disconnect()
            raise
        with self._lock:
            self._connected = True
            abandoned = self._state == "closed"
        if abandoned:  # open_event_stream gave up waiting (timeout or cancel) before we got here
            self._disconnect()

    def _subscribe(self, conn: connection.Connection, keepalive: tuple[int, int] | None) -> None:
        if keepalive is not None:
            with suppress(Unsupported), translated():  # local drivers such as test:// have no keepalive
                conn.setKeepAlive(*keepalive)
        conn.registerCloseCallback(self._libvirt_closed, None)
        subscribed = []
        domain_events: list[tuple[str, int, Callable[..., None], bool]] = [
            ("domain-lifecycle", libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._domain_lifecycle, True),
            ("domain-reboot", libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, self._domain_reboot, True),
            ("domain-device-added", libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, self._device_added, False),
            ("domain-device-removed", libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._device_removed, False),
            ("domain-metadata-change", libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, self._metadata_changed, False),
        ]
        for name, event_id, callback, required in domain_events:
            callback_id = _register(required, conn.domainEventRegisterAny, None, event_id, callback, None)
            if callback_id is not None:
                self._domain_ids.append(callback_id)
                subscribed.append(name)
        # A host without a network or storage driver has no such events; its domains still do.
        network_id = _register(
            False,
            conn.networkEventRegisterAny,
            None,
            libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE,
            self._network_lifecycle,
            None,
        )
        if network_id is not None:
            self._network_ids.append(network_id)
            subscribed.append("network-lifecycle")
        pool_events: list[tuple[str, int, Callable[..., None]]] = [
            ("pool-lifecycle", libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, self._pool_lifecycle),
            ("pool-refresh", libvirt.VIR_STORAGE_POOL_EVENT_ID_REFRESH, self._pool_refresh),
        ]
        for name, event_id, callback in pool_events:
            callback_id = _register(False, conn.storagePoolEventRegisterAny, None, event_id, callback, None)
            if callback_id is not None:
                self._pool_ids.append(callback_id)
                subscribed.append(name)
        self.subscriptions = tuple(subscribed)

    def _disconnect(self) -> None:
        """Deregister and close; every step is best effort, since the connection may already be dead."""
        with self._lock:
            conn, self._conn = self._conn, None
            ids = (self._domain_ids, self._network_ids, self._pool_ids)
            self._domain_ids, self._network_ids, self._pool_ids = [], [], []
        if conn is None:
            return
        domain_ids, network_ids, pool_ids = ids
        steps: list[Callable[[], object]] = [partial(conn.domainEventDeregisterAny, i) for i in domain_ids]
        steps += [partial(conn.networkEventDeregisterAny, i) for i in network_ids]
        steps += [partial(conn.storagePoolEventDeregisterAny, i) for i in pool_ids]
        steps += [conn.unregisterCloseCallback, conn.close]
        for step in steps:
            try:
                step()
            except Exception as exc:  # a dead or already closed connection
                logger.debug("Ignoring %r while closing the event connection to %s", exc, self.target.uri)

    def _abandon(self) -> None:
        """open_event_stream stopped waiting: make sure the connection, once open, is closed."""
        with self._lock:
            self._state = "closed"
            finished = self._connected
        if finished:
            threading.Thread(target=self._disconnect, name="libvirt-events-close", daemon=True).start()

    # libvirt's callbacks (normally in the loop's thread, but never assumed to be).

    def _domain_lifecycle(self, _conn: object, dom: LibvirtObject, event: int, detail: int, _opaque: object) -> None:
        self._emit("domain", dom, *event_names.domain_lifecycle(event, detail))

    def _domain_reboot(self, _conn: object, dom: LibvirtObject, _opaque: object) -> None:
        self._emit("domain", dom, "reboot", "")

    def _device_added(self, _conn: object, dom: LibvirtObject, alias: str, _opaque: object) -> None:
        self._emit("domain", dom, "device-added", str(alias))

    def _device_removed(self, _conn: object, dom: LibvirtObject, alias: str, _opaque: object) -> None:
        self._emit("domain", dom, "device-removed", str(alias))

    def _metadata_changed(self, _conn: object, dom: LibvirtObject, kind: int, _nsuri: object, _opaque: object) -> None:
        self._emit("domain", dom, "metadata-changed", event_names.metadata_kind(kind))

    def _network_lifecycle(self, _conn: object, net: LibvirtObject, event: int, _detail: int, _opaque: object) -> None:
        self._emit("network", net, event_names.network_lifecycle(event), "")

    def _pool_lifecycle(self, _conn: object, pool: LibvirtObject, event: int, _detail: int, _opaque: object) -> None:
        self._emit("pool", pool, event_names.pool_lifecycle(event), "")

    def _pool_refresh(self, _conn: object, pool: LibvirtObject, _opaque: object) -> None:
        self._emit("pool", pool, "refresh", "")

    def _libvirt_closed(self, _conn: object, reason: int, _opaque: object) -> None:
        self._on_loop(self._lost, event_names.close_reason(reason))

    def _emit(self, kind: str, obj: LibvirtObject, event: str, detail: str) -> None:
        at = time.monotonic()
        try:
            uuid, name = str(obj.UUIDString()), str(obj.name())
        except Exception:
            logger.exception("Could not read the %s of a libvirt %s event", kind, event)
            return
        self._on_loop(self._deliver, VirtEvent(kind=kind, uuid=uuid, name=name, event=event, detail=detail, at=at))

    def _on_loop(self, func: Callable[[T], None], arg: T) -> None:
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            func(arg)
            return
        with suppress(RuntimeError):  # the loop has closed: nobody is listening any more
            self._loop.call_soon_threadsafe(func, arg)

    def _deliver(self, event: VirtEvent) -> None:
        with self._lock:
            if self._state not in ("opening", "open"):
                return
        try:
            self._on_event(event)
        except Exception:
            logger.exception("on_event failed for %s", event)

    def _lost(self, reason: str) -> None:
        with self._lock:
            if self._state not in ("opening", "open"):
                return
            self._state = "lost"
        try:
            self._on_closed(reason)
        except Exception:
            logger.exception("on_closed failed for %s", self.target.uri)


async def open_event_stream(
    target: HostTarget,
    on_event: OnEvent,
    on_closed: OnClosed,
    *,
    keepalive: tuple[int, int] | None = (5, 3),
    open_timeout: float = 10,
) -> EventStream:
    """Open a dedicated connection to ``target`` and subscribe to its events.

    ``keepalive`` is (interval seconds, missed replies): (5, 3) notices a dead peer in about
    15-20 s and then calls ``on_closed("keepalive")``; None leaves keepalive off. The open runs in
    a thread and raises ``HostUnreachable`` after ``open_timeout`` seconds, while the loop carries
    on; a connection that opens after that is closed, not leaked. Other failures raise the usual
    ``VirtError``. Needs ``use_asyncio_event_loop()`` for the running loop.
    """
    loop = asyncio.get_running_loop()
    _require_event_loop(loop)
    stream = EventStream(target, loop, on_event, on_closed)
    try:
        await _in_thread(
            lambda: stream._connect(keepalive), name=f"libvirt-events-open {target.uri}", timeout=open_timeout
        )
    except TimeoutError:
        stream._abandon()
        raise HostUnreachable(f"The host did not answer within {open_timeout:g} s ({target.uri}).") from None
    except BaseException:
        stream._abandon()
        raise
    with stream._lock:
        if stream._state == "opening":
            stream._state = "open"
    return stream


def _register(required: bool, register: Callable[..., int], *args: object) -> int | None:
    """A callback id from ``register(*args)``; None if this host lacks that event (unless required).

    A driver without the event answers "not supported"; a libvirt older than the event id
    answers "invalid argument".
    """
    try:
        with translated():
            return int(register(*args))
    except (Unsupported, InvalidArgument):
        if required:
            raise
        return None


async def _in_thread(func: Callable[[], T], *, name: str, timeout: float) -> T:
    """``func()`` in a daemon thread, awaited for at most ``timeout`` seconds.

    Not ``run_in_executor``: a libvirt call hung on a dead host would hold an executor worker for
    minutes and make ``asyncio.run`` wait for it on the way out.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the waiter timed out or was cancelled
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = func()
        except BaseException as exc:
            error = exc
        with suppress(RuntimeError):  # the loop closed while we worked
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await asyncio.wait_for(future, timeout)
