"""Closing live console sessions from the web app: the console proxy listens and drops those sockets."""

from __future__ import annotations

import json
from collections.abc import Iterable

import redis
from django.conf import settings


def close_channel() -> str:
    return f"{settings.KVMWEB_CHANNEL_PREFIX}:console:close"


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def sessions_close(session_ids: Iterable[int], *, reason: str) -> int:
    """Ask every proxy process to close these sessions now; returns how many listeners heard it."""
    ids = sorted(set(session_ids))
    if not ids:
        return 0
    message = json.dumps({"sessions": ids, "reason": reason})
    return int(redis_client().publish(close_channel(), message))
