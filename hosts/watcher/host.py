"""One host's watcher: its own event connection, its own libvirt thread, and the loop that keeps it connected.

A session is: open the event stream (so no event is missed), read the full inventory, reconcile the
database, mark the host connected, then follow events until the connection closes. Events that arrive
before the reconcile has committed are held and fetched right after it. When the connection closes,
the host is marked unreachable and the watcher reconnects with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from hosts.models import Host
from hosts.watcher import apply
from hosts.watcher.backoff import Backoff
from hosts.watcher.coalesce import Coalescer
from hosts.watcher.executors import DaemonExecutor, run_db, run_in
from hosts.watcher.plan import HostSpec
from kvmweb import virt
from kvmweb.realtime.publish import apublish

log = logging.getLogger("kvmweb.watcher")

Key = tuple[str, str]  # (kind, uuid): ("domain", "6f1c...")

# libvirt closes a connection once `count` + 1 keepalive pings in a row, one every `interval` seconds,
# went unanswered: (5, 2) finds a silent host dead 15 s after it last spoke ((5, 3) measured 19.9 s).
KEEPALIVE = (5, 2)
OPEN_TIMEOUT = 10.0
# What the host's page says when its event connection closed under the watcher.
CLOSE_REASONS = {
    "eof": "The connection to libvirt closed: the daemon stopped or restarted, or the host went down.",
    "keepalive": f"The host stopped answering: no keepalive reply for {KEEPALIVE[0] * (KEEPALIVE[1] + 1)} s.",
    "error": "The connection to libvirt broke: the daemon went away, or the network failed.",
    "client": "The connection to libvirt was closed.",
}
Publisher = Callable[[list[str], dict[str, Any]], Awaitable[None]]

_APPLY: dict[str, Callable[[Host, str, Any], apply.Outgoing | None]] = {
    "domain": apply.domain_apply,
    "network": apply.network_apply,
    "pool": apply.pool_apply,
}


class HostGone(Exception):
    """The host's row was deleted or disabled while connecting: nothing left to watch."""


class HostWatcher:
    def __init__(
        self,
        spec: HostSpec,
        *,
        db: Executor,
        api: Any = virt,
        keepalive: tuple[int, int] = KEEPALIVE,
        open_timeout: float = OPEN_TIMEOUT,
        backoff: Backoff | None = None,
        publisher: Publisher = apublish,
    ) -> None:
        self.spec = spec
        self.api = api
        self.keepalive = keepalive
        self.open_timeout = open_timeout
        self.backoff = backoff or Backoff()
        self._db = db
        self._publish = publisher
        self._libvirt: Executor = DaemonExecutor(self._thread_name())
        self._host: Host | None = None
        self._task: asyncio.Task[None] | None = None
        # Per object: when its first unhandled event arrived, and when its last fetch returned (for DEBUG logs).
        self._timing: dict[Key, list[float]] = {}
        self.coalescer: Coalescer[Key, Any] = Coalescer(self._fetch, self._deliver, paused=True, name=spec.name)
        # Observable progress, for logs and tests.
        self.connected = asyncio.Event()
        self.sessions = 0
        self.last_reconcile: dict[str, Any] | None = None

    def _thread_name(self) -> str:
        return f"libvirt-h{self.spec.id}"

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """The watcher gave up on its own (the host was gone when it connected)."""
        return self._task is not None and self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"watch {self.spec.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.coalescer.close()
        self._libvirt.shutdown(wait=False, cancel_futures=True)

    async def run(self) -> None:
        """Connect, follow events, reconnect; until cancelled or the host is gone."""
        last_reason = ""
        while True:
            began = time.monotonic()
            try:
                reason = await self._session(reconnect=self.sessions > 0, began=began)
                delay = self.backoff.next()
                log.warning("host %s: connection lost (%s); reconnecting in %.1f s", self.spec.name, reason, delay)
            except HostGone:
                log.info("host %s: removed or disabled; no longer watched", self.spec.name)
                return
            except Exception as exc:
                reason = exc.message if isinstance(exc, virt.VirtError) else f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, virt.VirtError):
                    log.exception("host %s: unexpected error", self.spec.name)
                delay = self.backoff.next()
                if reason != last_reason or self.backoff.attempts <= 1:
                    log.warning("host %s: cannot connect (%s); retrying in %.1f s", self.spec.name, reason, delay)
                else:
                    log.info("host %s: still unreachable; retrying in %.1f s", self.spec.name, delay)
            last_reason = reason
            self.connected.clear()
            try:
                await run_db(self._db, apply.host_lost, self.spec.id, reason)
            except Exception:
                log.exception("host %s: could not record it as unreachable", self.spec.name)
            await asyncio.sleep(delay)

    async def _session(self, *, reconnect: bool, began: float) -> str:
        """One connection, from open to close; returns why it closed."""
        loop = asyncio.get_running_loop()
        closed = asyncio.Event()
        why: list[str] = []

        def on_closed(reason: Any = None) -> None:
            why.append(CLOSE_REASONS.get(str(reason), f"The connection to libvirt closed ({reason})."))
            loop.call_soon_threadsafe(closed.set)

        self._libvirt = DaemonExecutor(self._thread_name())
        target = self.spec.target
        stream = await self.api.open_event_stream(
            target, self.on_event, on_closed, keepalive=self.keepalive, open_timeout=self.open_timeout
        )
        try:
            inventory = await run_in(self._libvirt, self.api.get_inventory, target)
            info = await run_in(self._libvirt, self.api.get_host_info, target)
            ksm = await run_in(self._libvirt, self.api.get_host_memory_params, target)
            result = await run_db(self._db, apply.host_connected, self.spec.id, inventory, info, ksm)
            if result is None:
                raise HostGone
            self._host, self.last_reconcile = result
            self.backoff.reset()  # a connection that worked: the next loss retries after `initial` again
            self.sessions += 1
            self.connected.set()
            self.coalescer.resume()
            summary = self.last_reconcile
            log.info(
                "host %s (%s): %s in %.2f s; %d VMs (%d new, %d changed, %d gone)",
                self.spec.name,
                target.uri,
                "reconnected" if reconnect else "connected",
                time.monotonic() - began,
                summary["vms"],
                summary["vms_new"],
                summary["vms_changed"],
                summary["vms_gone"],
            )
            if not why:
                await closed.wait()
            return why[0]
        finally:
            self.coalescer.pause()
            self._timing.clear()
            await _close_stream(stream)
            # A call still hung on the dead connection keeps only this (daemon) thread; the next session gets a new one.
            self._libvirt.shutdown(wait=False, cancel_futures=True)

    # -- events ------------------------------------------------------------------------------
    def on_event(self, event: Any) -> None:
        """Called on the loop thread for every libvirt event of this host."""
        if event.kind in _APPLY and event.uuid:
            key = (event.kind, event.uuid)
            self._timing.setdefault(key, [event.at, 0.0])
            self.coalescer.touch(key)

    async def _fetch(self, key: Key) -> Any:
        """The object's fresh record, read in this host's libvirt thread; None when the host no longer has it."""
        kind, uuid = key
        fetch = {"domain": self.api.get_domain_record, "network": self.api.get_network_record, "pool": self._pool}[kind]
        try:
            return await run_in(self._libvirt, fetch, self.spec.target, uuid)
        except virt.NotFound:
            return None
        finally:
            if key in self._timing:
                self._timing[key][1] = time.monotonic()

    def _pool(self, target: virt.HostTarget, uuid: str) -> apply.PoolFetch:
        # A refresh event means the pool's volumes changed: list them too (an inactive pool lists none).
        return self.api.get_pool_record(target, uuid), self.api.get_pool_volumes(target, uuid)

    async def _deliver(self, key: Key, record: Any) -> None:
        kind, uuid = key
        assert self._host is not None
        began = time.monotonic()
        out = await run_db(self._db, _APPLY[kind], self._host, uuid, record)
        written = time.monotonic()
        if out is not None:
            await self._publish(out.groups, out.message)
        event_at, fetched = self._timing.pop(key, (began, began))
        if log.isEnabledFor(logging.DEBUG):
            # event_at is time.monotonic() when libvirt's callback ran: CLOCK_MONOTONIC, comparable across processes.
            done = time.monotonic()
            log.debug(
                "host %s: %s %s %s %.1f ms after the event (fetched +%.1f, written +%.1f) event_at=%.6f",
                self.spec.name, kind, uuid, "sent" if out else "unchanged", (done - event_at) * 1000,
                (fetched - event_at) * 1000, (written - event_at) * 1000, event_at,
            )  # fmt: skip


async def _close_stream(stream: Any) -> None:
    result = stream.close()
    if asyncio.iscoroutine(result):
        await result
