"""The one way to push a message to browsers: after the transaction commits, to Channels groups."""

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import create_pool, decode_hosts
from django.conf import settings
from django.db import transaction
from redis import asyncio as aioredis

log = logging.getLogger(__name__)

MESSAGE_VERSION = 1
SEND_TIMEOUT = 5.0
# Redis gone for a while must not grow a worker's memory without bound; the pages re-read on reconnect.
MAX_QUEUED = 10_000
# Pushes waiting together leave in one Redis round trip, up to this many.
MAX_BATCH = 500

Push = tuple[list[str], dict[str, Any]]


def publish(groups: str | Iterable[str], message: dict[str, Any], *, key: str = "", hold: float = 0.0) -> None:
    """Send `message` to every group once the current transaction commits (at once outside one).

    Sending before commit would let a browser re-read a row that doesn't exist yet. `key` names what
    the message describes ("operation:12"), and `hold` keeps it back that many seconds: a newer
    message with its key that comes meanwhile replaces it unsent. So an operation that ends at once
    pushes its end only, not first that it is running.
    """
    targets = [groups] if isinstance(groups, str) else sorted(set(groups))
    # Round-trip now so a non-JSON payload fails in the caller, not silently in a socket.
    payload = json.loads(json.dumps({**message, "v": MESSAGE_VERSION}))
    transaction.on_commit(lambda: _send(targets, payload, key, hold))


def _send(groups: list[str], payload: dict[str, Any], key: str = "", hold: float = 0.0) -> None:
    if get_channel_layer() is None:
        return
    _Sender.get().enqueue(groups, payload, key=key, hold=hold)


def publish_flush(timeout: float = SEND_TIMEOUT) -> None:
    """Send every message this process published so far, held ones too, and wait until they left."""
    _Sender.get().flush(timeout)


def _event(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "event.forward", "message": payload}


async def _send_all(groups: list[str], payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    for group in groups:
        await layer.group_send(group, _event(payload))


class _Sender:
    """One event loop thread per process for sync callers (workers, WSGI views).

    async_to_sync would start a fresh loop per call, and the Redis channel layer keeps its
    connections per loop: every push would reconnect to Redis (about 10 ms, against 0.3 ms here).
    Callers hand messages over and go on: one task sends them in the order they were published, so
    an operation's progress never overtakes its outcome, and a worker does not wait for Redis.
    """

    _instance: "_Sender | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue[Push] = asyncio.Queue()
        self.held: dict[str, tuple[asyncio.TimerHandle, Push]] = {}
        self.redis: _RedisPublisher | None = None
        threading.Thread(target=self._run, name="kvmweb-publish", daemon=True).start()
        atexit.register(self._flush_at_exit)  # a management command's last pushes still leave

    def _run(self) -> None:
        self.loop.create_task(self._drain())
        self.loop.run_forever()

    async def _drain(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await asyncio.wait_for(self._send_batch(batch), SEND_TIMEOUT)
            except Exception:  # a push is best effort: the page is corrected by the next event or a reload
                log.exception("could not publish %d messages (the first %s)", len(batch), batch[0][1].get("type"))
                await self._forget_redis()  # connect afresh next time
            finally:
                for _ in batch:
                    self.queue.task_done()

    async def _send_batch(self, batch: list[Push]) -> None:
        layer = get_channel_layer()
        if self.redis is not None and self.redis.layer is not layer:
            await self._forget_redis()
        if self.redis is None:
            self.redis = _RedisPublisher.for_layer(layer)
        if self.redis is not None:
            await self.redis.send(batch)
            return
        for groups, payload in batch:
            await _send_all(groups, payload)

    async def _forget_redis(self) -> None:
        redis, self.redis = self.redis, None
        if redis is not None:
            with contextlib.suppress(Exception):
                await redis.client.aclose()

    @classmethod
    def get(cls) -> "_Sender":
        # A forked worker child must not share its parent's loop thread, which did not survive the fork.
        with cls._lock:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls()
            return cls._instance

    def enqueue(self, groups: list[str], payload: dict[str, Any], *, key: str = "", hold: float = 0.0) -> None:
        if self.queue.qsize() >= MAX_QUEUED:
            log.warning("dropped %s to %s: %d pushes already wait", payload.get("type"), groups, MAX_QUEUED)
            return
        self.loop.call_soon_threadsafe(self._accept, (groups, payload), key, hold)

    def _accept(self, push: Push, key: str, hold: float) -> None:
        if key in self.held:
            self.held.pop(key)[0].cancel()
        if key and hold > 0:
            self.held[key] = (self.loop.call_later(hold, self._release, key), push)
        else:
            self.queue.put_nowait(push)

    def _release(self, key: str) -> None:
        timer, push = self.held.pop(key)
        timer.cancel()
        self.queue.put_nowait(push)

    def flush(self, timeout: float) -> None:
        async def sent() -> None:
            for key in list(self.held):
                self._release(key)
            await self.queue.join()

        asyncio.run_coroutine_threadsafe(sent(), self.loop).result(timeout)

    def _flush_at_exit(self) -> None:
        if self.pid != os.getpid():
            return
        try:
            self.flush(SEND_TIMEOUT)
        except concurrent.futures.TimeoutError:  # Redis gone: say what the pages will miss until they reload
            log.warning("exiting with %d pushes not sent", self.queue.qsize())


class _RedisPublisher:
    """Sends a batch of pushes to Channels' Redis pub/sub layer in one pipeline.

    The layer's group_send costs a round trip, and a good deal of CPU, per group: an operation's
    pushes reach three or four groups each. This publishes the same bytes to the same channel names
    (`<prefix>__group__<group>`, serialized by the layer), which tests/unit/test_publish_order.py
    checks against a real consumer of the layer.
    """

    def __init__(self, layer: RedisPubSubChannelLayer, host: dict[str, Any], prefix: str) -> None:
        self.layer = layer
        self.prefix = prefix
        self.client = aioredis.Redis(connection_pool=create_pool(host))

    @classmethod
    def for_layer(cls, layer: Any) -> "_RedisPublisher | None":
        """None for any other layer, or a sharded one: those get group_send."""
        if not isinstance(layer, RedisPubSubChannelLayer):
            return None
        layers: dict[str, dict[str, Any]] = settings.CHANNEL_LAYERS
        config = layers["default"].get("CONFIG", {})
        hosts = decode_hosts(config.get("hosts"))
        return cls(layer, hosts[0], config.get("prefix", "asgi")) if len(hosts) == 1 else None

    async def send(self, batch: list[Push]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for groups, payload in batch:
                data = self.layer.serialize(_event(payload))
                for group in groups:
                    pipe.publish(f"{self.prefix}__group__{group}", data)
            await pipe.execute()


async def apublish(groups: str | Iterable[str], message: dict[str, Any]) -> None:
    """For async processes (the event watcher): send now, awaited, on the caller's own loop.

    The caller must have committed whatever the message describes.
    """
    targets = [groups] if isinstance(groups, str) else sorted(set(groups))
    payload = json.loads(json.dumps({**message, "v": MESSAGE_VERSION}))
    await _send_all(targets, payload)
