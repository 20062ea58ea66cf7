"""Watches: which objects' live samples a page wants, checked against what its user may see."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from kvmweb.access import User
from stats import store
from stats.objects import StatObject
from stats.selectors import visible_objects

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WatchResult:
    allowed: list[StatObject]
    refused: list[StatObject]


def stats_watch(*, user: User, objects: Iterable[StatObject]) -> WatchResult:
    """Renew the watch on each object `user` may see (at most two queries); refuse the rest.

    An object that doesn't exist is refused like one the user may not see, so neither leaks.
    """
    wanted = sorted(set(objects))
    visible = visible_objects(user, wanted)
    allowed = [obj for obj in wanted if obj in visible]
    try:
        store.watch_renew(obj.label for obj in allowed)
    except redis.RedisError as exc:
        # The socket stays; the page gets its live points again once Redis is back and it renews.
        log.warning("stats: could not record watches: %s", exc)
    return WatchResult(allowed=allowed, refused=[obj for obj in wanted if obj not in visible])
