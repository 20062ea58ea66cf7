"""The one way to push a message to browsers: after the transaction commits, to Channels groups."""

import asyncio
import atexit
import concurrent.futures
import json
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

MESSAGE_VERSION = 1
SEND_TIMEOUT = 5.0
# Redis gone for a while must not grow a worker's memory without bound; the pages re-read on reconnect.
MAX_QUEUED = 10_000


def publish(groups: str | Iterable[str], message: dict[str, Any]) -> None:
    """Send `message` to every group once the current transaction commits (at once outside one).

    Sending before commit would let a browser re-read a row that doesn't exist yet.
    """
    targets = [groups] if isinstance(groups, str) else sorted(set(groups))
    # Round-trip now so a non-JSON payload fails in the caller, not silently in a socket.
    payload = json.loads(json.dumps({**message, "v": MESSAGE_VERSION}))
    transaction.on_commit(lambda: _send(targets, payload))


def _send(groups: list[str], payload: dict[str, Any]) -> None:
    if get_channel_layer() is None:
        return
    _Sender.get().enqueue(groups, payload)


def publish_flush(timeout: float = SEND_TIMEOUT) -> None:
    """Wait until every message this process published so far has been sent (tests, process exit)."""
    _Sender.get().flush(timeout)


async def _send_all(groups: list[str], payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    for group in groups:
        await layer.group_send(group, {"type": "event.forward", "message": payload})


class _Sender:
    """One event loop thread per process for sync callers (workers, WSGI views).

    async_to_sync would start a fresh loop per call, and the Redis channel layer keeps its
    connections per loop: every push would reconnect to Redis (about 10 ms, against 0.3 ms here).
    Callers hand messages over and go on: one task sends them in the order they were published, so
    an operation's progress never overtakes its outcome, and a worker does not wait ~0.6 ms per push.
    """

    _instance: "_Sender | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue[tuple[list[str], dict[str, Any]]] = asyncio.Queue()
        threading.Thread(target=self._run, name="kvmweb-publish", daemon=True).start()
        atexit.register(self._flush_at_exit)  # a management command's last pushes still leave

    def _run(self) -> None:
        self.loop.create_task(self._drain())
        self.loop.run_forever()

    async def _drain(self) -> None:
        while True:
            groups, payload = await self.queue.get()
            try:
                await asyncio.wait_for(_send_all(groups, payload), SEND_TIMEOUT)
            except Exception:  # a push is best effort: the page is corrected by the next event or a reload
                log.exception("could not publish %s to %s", payload.get("type"), groups)
            finally:
                self.queue.task_done()

    @classmethod
    def get(cls) -> "_Sender":
        # A forked worker child must not share its parent's loop thread, which did not survive the fork.
        with cls._lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def enqueue(self, groups: list[str], payload: dict[str, Any]) -> None:
        if self.queue.qsize() >= MAX_QUEUED:
            log.warning("dropped %s to %s: %d pushes already wait", payload.get("type"), groups, MAX_QUEUED)
            return
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (groups, payload))

    def flush(self, timeout: float) -> None:
        asyncio.run_coroutine_threadsafe(self.queue.join(), self.loop).result(timeout)

    def _flush_at_exit(self) -> None:
        if self.pid != os.getpid():
            return
        try:
            self.flush(SEND_TIMEOUT)
        except concurrent.futures.TimeoutError:  # Redis gone: say what the pages will miss until they reload
            log.warning("exiting with %d pushes not sent", self.queue.qsize())


async def apublish(groups: str | Iterable[str], message: dict[str, Any]) -> None:
    """For async processes (the event watcher): send now, awaited, on the caller's own loop.

    The caller must have committed whatever the message describes.
    """
    targets = [groups] if isinstance(groups, str) else sorted(set(groups))
    payload = json.loads(json.dumps({**message, "v": MESSAGE_VERSION}))
    await _send_all(targets, payload)
