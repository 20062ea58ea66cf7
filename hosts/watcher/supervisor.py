"""The watcher process: one HostWatcher task per enabled host, kept in step with the hosts table.

Host services tell the watcher about an added, changed or removed host through the Channels group
``groups.WATCHER`` (hosts.messages.watcher_notify); a cheap re-read of the hosts table every
``check_every`` seconds catches anything a lost message would have missed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer
from django.db import connections

from hosts.watcher.executors import DaemonExecutor, run_db
from hosts.watcher.host import KEEPALIVE, OPEN_TIMEOUT, HostWatcher
from hosts.watcher.plan import HostSpec, enabled_hosts, plan_changes
from kvmweb import virt
from kvmweb.realtime import groups

log = logging.getLogger("kvmweb.watcher")

LISTEN_RETRY = 5.0
DB_CLOSE_TIMEOUT = 5.0


class Supervisor:
    def __init__(
        self,
        *,
        api: Any = virt,
        check_every: float = 30.0,
        db_threads: int = 4,
        keepalive: tuple[int, int] = KEEPALIVE,
        open_timeout: float = OPEN_TIMEOUT,
    ) -> None:
        self.api = api
        self.check_every = check_every
        self.keepalive = keepalive
        self.open_timeout = open_timeout
        self.db = DaemonExecutor("watcher-db", db_threads, on_exit=connections.close_all)
        self.watchers: dict[int, HostWatcher] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.listening = asyncio.Event()
        self.syncs = 0

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.get_running_loop().create_task(self._listen(), name="watch host changes")
        try:
            while not stop.is_set():
                self._wake.clear()
                await self.sync()
                await _first_of(stop, self._wake, timeout=self.check_every)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await self.close()

    async def sync(self) -> None:
        """Start, restart or stop host watchers so they match the enabled hosts in the database."""
        try:
            wanted = await run_db(self.db, enabled_hosts)
        except Exception:
            log.exception("cannot read the hosts table; watching the same hosts as before")
            return
        self.syncs += 1
        for host_id in [host_id for host_id, watcher in self.watchers.items() if watcher.finished]:
            del self.watchers[host_id]  # gone when it connected; started again if the row is back
        plan = plan_changes({host_id: w.spec for host_id, w in self.watchers.items()}, wanted)
        for host_id in plan.stop:
            watcher = self.watchers.pop(host_id)
            log.info("host %s: disabled or removed; disconnecting", watcher.spec.name)
            self._retire(watcher)
        for spec in plan.restart:
            log.info("host %s: URI or credentials changed; reconnecting to %s", spec.name, spec.target.uri)
            self._retire(self.watchers.pop(spec.id))
            self._start(spec)
        for spec in plan.start:
            log.info("host %s: watching %s", spec.name, spec.target.uri)
            self._start(spec)
        for spec in plan.rename:
            self.watchers[spec.id].spec = spec

    def _retire(self, watcher: HostWatcher) -> None:
        """Stop a watcher in the background: closing a dead host's connection can take seconds."""
        task = asyncio.get_running_loop().create_task(watcher.stop(), name=f"stop {watcher.spec.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _start(self, spec: HostSpec) -> None:
        watcher = HostWatcher(spec, db=self.db, api=self.api, keepalive=self.keepalive, open_timeout=self.open_timeout)
        self.watchers[spec.id] = watcher
        watcher.start()

    async def close(self) -> None:
        watchers, self.watchers = list(self.watchers.values()), {}
        await asyncio.gather(*(w.stop() for w in watchers), *self._retiring, return_exceptions=True)
        # The database threads finish their current write and close their connections.
        self.db.shutdown(wait=False, cancel_futures=True)
        if not await asyncio.to_thread(self.db.join, DB_CLOSE_TIMEOUT):
            log.warning("a database write was still running after %g s; leaving it", DB_CLOSE_TIMEOUT)

    async def _listen(self) -> None:
        """Wake the sync loop whenever a host service says a host was added, changed or removed."""
        layer = get_channel_layer()
        if layer is None:
            log.warning("no channel layer: host changes are noticed by the %g s check only", self.check_every)
            return
        while True:
            try:
                channel = await layer.new_channel("watcher.")
                await layer.group_add(groups.WATCHER, channel)
                if not self.listening.is_set():
                    log.info("listening for host changes on group %s", groups.WATCHER)
                self.listening.set()
                while True:
                    await layer.receive(channel)
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning("listening for host changes failed (%s); retrying in %g s", exc, LISTEN_RETRY)
                await asyncio.sleep(LISTEN_RETRY)


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
