"""Writes for pools and volumes. The inventory half: make the rows match what a host reports."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from hosts.models import Host
from kvmweb import virt
from kvmweb.observed import observe, observed_row
from storage.messages import pools_publish
from storage.models import StoragePool, Volume

POOL_FIELDS = ("name", "type", "state", "autostart", "persistent", "capacity", "allocation", "available",
               "target_path", "xml")  # fmt: skip
VOLUME_FIELDS = ("key", "path", "type", "format", "capacity", "allocation", "backing_path", "encryption",
                 "secret_uuid")  # fmt: skip


def _pool_values(record: virt.PoolRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "type": record.type or "",
        "state": record.state or "",
        "autostart": record.autostart,
        "persistent": record.persistent,
        "capacity": record.capacity or 0,
        "allocation": record.allocation or 0,
        "available": record.available or 0,
        "target_path": record.target_path or "",
        "xml": record.xml or "",
    }


def _volume_values(record: virt.VolumeRecord) -> dict[str, Any]:
    return {
        "key": record.key or "",
        "path": record.path or "",
        "type": record.type or "",
        "format": record.format or "",
        "capacity": record.capacity or 0,
        "allocation": record.allocation or 0,
        "backing_path": record.backing_path or "",
        # As the host reports it, so a volume encrypted outside kvmweb is guarded like kvmweb's own.
        "encryption": record.encryption or "",
        "secret_uuid": record.secret_uuid or "",
    }


def storage_apply_inventory(
    *, host: Host, pools: Sequence[virt.PoolRecord], volumes: Sequence[virt.VolumeRecord], now: datetime
) -> int:
    """Upsert pools (missing ones marked gone) and replace each listed pool's volume rows.

    Every pool whose row or volume rows changed is pushed to browsers (``pool.state``) on commit.
    """
    rows = {str(p.uuid): p for p in StoragePool.objects.filter(host=host)}
    create, update = [], []
    for record in pools:
        values = _pool_values(record)
        row = rows.get(record.uuid)
        if row is None:
            row = StoragePool(host=host, uuid=record.uuid, **values)
            rows[record.uuid] = row
            create.append(row)
        elif observe(row, values):
            update.append(row)
    listed = {record.uuid for record in pools}
    for uuid, row in rows.items():
        if uuid not in listed and row.gone_since is None:
            row.gone_since, row.state = now, "inactive"
            update.append(row)
    # The worker and the events process may index a newly added host at once: an upsert lets both win.
    create.sort(key=lambda row: str(row.uuid))
    StoragePool.objects.bulk_create(
        create, update_conflicts=True, unique_fields=["host", "uuid"], update_fields=list(POOL_FIELDS)
    )
    StoragePool.objects.bulk_update(update, [*POOL_FIELDS, "gone_since"])
    # An active pool's listing is complete even when empty: its last volume may have just gone.
    active = [record.uuid for record in pools if record.state == "running"]
    by_volumes = _apply_volumes(rows, volumes, complete=active)
    changed = {row.pk: row for row in [*create, *update]}
    changed.update({row.pk: row for row in rows.values() if row.pk in by_volumes})
    pools_publish(changed.values())
    return len(create) + len(update) + sum(by_volumes.values())


def _apply_volumes(
    pools: dict[str, StoragePool], volumes: Sequence[virt.VolumeRecord], *, complete: Iterable[str] = ()
) -> dict[int, int]:
    """Volumes are listed only for active pools; an inactive pool keeps its last known volumes.

    Pools in `complete` had their full listing taken, so a row it lacks goes even when it lists
    nothing. Returns how many rows changed, by pool id (pools without changes are left out).
    """
    by_pool: dict[str, list[virt.VolumeRecord]] = {uuid: [] for uuid in complete}
    for record in volumes:
        by_pool.setdefault(record.pool_uuid, []).append(record)
    existing = {
        (v.pool_id, v.name): v for v in Volume.objects.filter(pool__in=[pools[u] for u in by_pool if u in pools])
    }
    create, update, seen = [], [], set()
    for pool_uuid, records in by_pool.items():
        pool = pools.get(pool_uuid)
        if pool is None:
            continue
        for record in records:
            values = _volume_values(record)
            seen.add((pool.pk, record.name))
            row = existing.get((pool.pk, record.name))
            if row is None:
                create.append(Volume(pool=pool, name=record.name, **values))
            elif any(getattr(row, k) != v for k, v in values.items()):
                for key, value in values.items():
                    setattr(row, key, value)
                update.append(row)
    stale = [row for key, row in existing.items() if key not in seen]
    # The worker (after its own change) and the events process (after libvirt's refresh event)
    # may list the same new volume at once: an upsert lets both win, and writing rows in one
    # order keeps their row locks from deadlocking.
    create.sort(key=lambda row: (row.pool_id, row.name))
    Volume.objects.bulk_create(
        create, update_conflicts=True, unique_fields=["pool", "name"], update_fields=list(VOLUME_FIELDS)
    )
    Volume.objects.bulk_update(sorted(update, key=lambda row: row.pk), list(VOLUME_FIELDS))
    Volume.objects.filter(pk__in=[row.pk for row in stale]).delete()
    return dict(Counter(row.pool_id for row in [*create, *update, *stale]))


def pool_apply_record(*, host: Host, uuid: str, record: virt.PoolRecord | None, now: datetime) -> StoragePool | None:
    """One pool's row from one fresh observation, for an event; None when nothing changed.

    `record` None means the host no longer has the pool: the row is marked gone, never deleted.
    Its volumes are `pool_apply_volumes`'s.
    """
    if record is None:
        row = StoragePool.objects.filter(host=host, uuid=uuid).first()
        if row is None or row.gone_since is not None:
            return None
        row.gone_since, row.state = now, "inactive"
        row.save(update_fields=["gone_since", "state", "updated"])
        return row
    return observed_row(StoragePool, {"host": host, "uuid": uuid}, _pool_values(record), POOL_FIELDS)


def pool_apply_volumes(*, host: Host, uuid: str, volumes: Sequence[virt.VolumeRecord]) -> int:
    """One active pool's volume rows from a fresh listing (after a refresh event); returns how many changed."""
    row = StoragePool.objects.filter(host=host, uuid=uuid).first()
    if row is None or not volumes:
        return 0
    return sum(_apply_volumes({uuid: row}, volumes).values())


def volume_forget(volume: Volume) -> None:
    """Drop the row of a volume its host has just deleted, and tell the pages showing its pool."""
    Volume.objects.filter(pk=volume.pk).delete()
    pools_publish([volume.pool])
