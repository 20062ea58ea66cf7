"""Per-object coalescing of events: a burst for one VM costs one fetch and one message, a lone event no wait.

The first event for a key starts a refresh at once (fetch, then deliver). Events that arrive while
it runs only mark the key dirty; when the fetch returns, a dirty key is fetched once more instead of
delivering an answer that is already out of date (at most ``max_skips`` times in a row, so a VM that
never stops changing still shows up). Keys are independent: one slow VM never holds up another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class Coalescer(Generic[K, R]):
    def __init__(
        self,
        fetch: Callable[[K], Awaitable[R]],
        deliver: Callable[[K, R], Awaitable[None]],
        *,
        max_skips: int = 2,
        paused: bool = False,
        name: str = "coalescer",
    ) -> None:
        self._fetch = fetch
        self._deliver = deliver
        self.max_skips = max_skips
        self.name = name
        self._paused = paused
        self._dirty: set[K] = set()
        self._running: dict[K, asyncio.Task[None]] = {}
        self.fetches = 0
        self.deliveries = 0

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def pending(self) -> frozenset[K]:
        """Keys with an event not yet fetched."""
        return frozenset(self._dirty)

    def touch(self, key: K) -> None:
        """Something happened to ``key``: refresh it now, or once more after the refresh under way."""
        self._dirty.add(key)
        if not self._paused and key not in self._running:
            self._start(key)

    def pause(self) -> None:
        """Keep collecting keys but fetch nothing (while disconnected or reconciling)."""
        self._paused = True

    def resume(self) -> None:
        """Fetch every key collected while paused."""
        self._paused = False
        for key in list(self._dirty):
            if key not in self._running:
                self._start(key)

    def forget(self) -> None:
        """Drop collected keys (a full reconcile has just covered them)."""
        self._dirty.clear()

    async def idle(self) -> None:
        """Wait until no refresh runs (tests, and a clean shutdown)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def close(self) -> None:
        self._paused = True
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, key: K) -> None:
        self._running[key] = asyncio.get_running_loop().create_task(self._drain(key), name=f"{self.name}:{key}")

    async def _drain(self, key: K) -> None:
        skips = 0
        try:
            while key in self._dirty and not self._paused:
                self._dirty.discard(key)
                self.fetches += 1
                try:
                    result = await self._fetch(key)
                except Exception as exc:
                    # A host that went away ends its session; the reconcile after reconnecting covers this key.
                    log.debug("%s: fetching %s failed: %s", self.name, key, exc)
                    continue
                if self._paused:
                    self._dirty.add(key)  # fetched on a connection being replaced: redo after resume
                    return
                if key in self._dirty and skips < self.max_skips:
                    skips += 1
                    continue
                skips = 0
                try:
                    await self._deliver(key, result)
                    self.deliveries += 1
                except Exception:
                    log.exception("%s: applying %s failed", self.name, key)
        finally:
            self._running.pop(key, None)
