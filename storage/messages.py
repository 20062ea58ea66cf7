"""The WebSocket payload for pools, and who may see it.

A ``pool.state`` message says a pool's row, or the rows of its volumes, changed: pages showing the
pool (its page, its volumes' pages, the storage list, its host's Storage tab) re-read their part.
Whoever sees the host sees its pools (kvmweb/access.py), so the audience is the host's group and
the administrators.
"""

from collections.abc import Iterable
from typing import Any

from kvmweb.realtime import groups
from kvmweb.realtime.publish import publish
from storage.models import StoragePool


def pool_payload(pool: StoragePool) -> dict[str, Any]:
    return {
        "type": "pool.state",
        "pool": {
            "id": pool.pk,
            "host": pool.host_id,
            "uuid": str(pool.uuid),
            "name": pool.name,
            "state": pool.state,
            "autostart": pool.autostart,
            "persistent": pool.persistent,
            "capacity": pool.capacity,
            "allocation": pool.allocation,
            "available": pool.available,
            "gone": pool.gone_since is not None,
        },
    }


def pool_groups(pool: StoragePool) -> list[str]:
    return [groups.ADMINS, groups.host_group(pool.host_id)]


def pools_publish(pools: Iterable[StoragePool]) -> None:
    """One ``pool.state`` per pool, sent when the current transaction commits."""
    for pool in pools:
        publish(pool_groups(pool), pool_payload(pool))
