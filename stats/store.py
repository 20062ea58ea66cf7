"""The sampler's short-term memory in Redis, under its own key prefix (``kvmweb:stats:``).

- ``raw:<host id>``: the counters last read on a host (one JSON value, expiring), so the next
  round can turn them into rates, whichever worker runs it.
- ``watched``: a sorted set of the objects some page shows (member "vm:<uuid>", score = when the
  watch expires, epoch seconds). Pages renew their watches; the sampler publishes only these.
- ``lock:<host id>``: held while a host is sampled, so a slow host's rounds never pile up.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from django.conf import settings

from stats.objects import SAMPLE_EVERY
from stats.rates import HostCounters, VmCounters

# Counters older than this are useless for a rate; they expire rather than pile up.
COUNTERS_TTL = 6 * SAMPLE_EVERY
# A page renews its watches every 30 s; a watch not renewed lapses after this.
WATCH_TTL = 60
# A sampling round must finish well within this, or the next one may start beside it.
LOCK_TTL = 3 * SAMPLE_EVERY

_clients: dict[tuple[int, str], redis.Redis] = {}
_clients_lock = threading.Lock()


def client() -> redis.Redis:
    """One connection pool per process and URL (a forked worker child makes its own)."""
    url = settings.REDIS_URL
    key = (os.getpid(), url)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return _clients[key]


def prefix() -> str:
    return str(getattr(settings, "KVMWEB_STATS_REDIS_PREFIX", "kvmweb:stats:"))


def _key(*parts: object) -> str:
    return prefix() + ":".join(str(part) for part in parts)


# ---------------------------------------------------------------- counters


class Counters:
    """What a host's last round read: its own CPU times and each running VM's counters."""

    def __init__(self, host: HostCounters | None = None, vms: dict[str, VmCounters] | None = None) -> None:
        self.host = host
        self.vms = vms or {}

    def dump(self) -> str:
        return json.dumps(
            {
                "host": self.host.dump() if self.host else None,
                "vms": {uuid_: counters.dump() for uuid_, counters in self.vms.items()},
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, raw: bytes | str | None) -> Counters:
        if not raw:
            return cls()
        try:
            data: dict[str, Any] = json.loads(raw)
            host = HostCounters.load(data["host"]) if data.get("host") else None
            vms = {key: VmCounters.load(values) for key, values in (data.get("vms") or {}).items()}
        except (ValueError, TypeError, KeyError):
            return cls()  # written by an older version: start afresh, one round without rates
        return cls(host, vms)


def counters_swap(host_id: int, current: Counters) -> Counters:
    """Store this round's counters and return the previous round's, in one round trip."""
    pipe = client().pipeline(transaction=False)
    key = _key("raw", host_id)
    pipe.get(key)
    pipe.set(key, current.dump(), ex=COUNTERS_TTL)
    previous, _ = pipe.execute()
    return Counters.load(previous)


# ---------------------------------------------------------------- watches


def watch_renew(labels: Iterable[str], *, now: float | None = None) -> None:
    """Mark objects as shown on some page for the next WATCH_TTL seconds."""
    labels = list(labels)
    if not labels:
        return
    expires = (time.time() if now is None else now) + WATCH_TTL
    # GT: a watch renewed by one page is never shortened by another.
    client().zadd(_key("watched"), dict.fromkeys(labels, expires), gt=True)


def watched(*, now: float | None = None) -> set[str]:
    """The objects some page shows right now: one ZRANGEBYSCORE."""
    moment = time.time() if now is None else now
    members = client().zrangebyscore(_key("watched"), f"({moment}", "+inf")
    return {m.decode() if isinstance(m, bytes) else str(m) for m in members}


def watched_prune(*, now: float | None = None) -> int:
    """Drop lapsed watches, so the set stays as small as what is on screen."""
    moment = time.time() if now is None else now
    return int(client().zremrangebyscore(_key("watched"), "-inf", moment))


# ---------------------------------------------------------------- locks


@contextmanager
def host_round(host_id: int) -> Iterator[bool]:
    """Yield True if this process may sample the host now (no other round for it is running)."""
    key = _key("lock", host_id)
    token = uuid.uuid4().hex
    got = bool(client().set(key, token, nx=True, ex=LOCK_TTL))
    try:
        yield got
    finally:
        if got:
            # Release only our own lock: if the round overran LOCK_TTL, another may hold it now.
            _release(key, token)


_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _release(key: str, token: str) -> None:
    client().eval(_RELEASE, 1, key, token)
