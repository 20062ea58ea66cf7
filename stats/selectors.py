"""Reads: which series a user may see, and a series' points for a chart."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from kvmweb import access
from kvmweb.access import User
from kvmweb.errors import Invalid, NotVisible
from stats.models import StatSample
from stats.objects import RANGES, RETENTION, StatObject

# The columns of a point, in the order the API sends them after the timestamp.
POINT_COLUMNS = (
    "cpu_pct",
    "mem_used_kib",
    "mem_total_kib",
    "disk_rd_bps",
    "disk_wr_bps",
    "net_rx_bps",
    "net_tx_bps",
)

Point = list[float | int | None]


@dataclass(frozen=True, slots=True)
class History:
    obj: StatObject
    range: str
    resolution: int
    points: list[Point]


def visible_objects(user: User, objects: Iterable[StatObject]) -> set[StatObject]:
    """The objects among `objects` that `user` may see: one query per kind asked about."""
    objects = list(objects)
    vm_keys = [obj.key for obj in objects if obj.kind == StatSample.Kind.VM]
    host_keys = [int(obj.key) for obj in objects if obj.kind == StatSample.Kind.HOST]
    visible: set[StatObject] = set()
    if vm_keys:
        uuids = access.visible_vms(user).filter(uuid__in=vm_keys).values_list("uuid", flat=True)
        visible.update(StatObject(StatSample.Kind.VM, str(uuid)) for uuid in uuids)
    if host_keys:
        ids = access.visible_hosts(user).filter(pk__in=host_keys).values_list("pk", flat=True)
        visible.update(StatObject(StatSample.Kind.HOST, str(pk)) for pk in ids)
    return visible


def stats_history(*, user: User, obj: StatObject, range_name: str, now: datetime | None = None) -> History:
    """The points that draw `obj`'s chart over `range_name` (1h, 1d or 30d), oldest first."""
    if range_name not in RANGES:
        raise Invalid(f"Unknown range {range_name!r}; use one of: {', '.join(RANGES)}.", details={"range": range_name})
    if obj not in visible_objects(user, [obj]):
        raise NotVisible("Not found.")
    resolution = RANGES[range_name]
    since = (now or timezone.now()) - RETENTION[resolution] - timedelta(seconds=resolution)
    rows = (
        StatSample.objects.filter(kind=obj.kind, object_key=obj.key, resolution=resolution, ts__gte=since)
        .order_by("ts")
        .values_list("ts", *POINT_COLUMNS)
    )
    points: list[Point] = [[int(ts.timestamp()), *values] for ts, *values in rows]
    return History(obj=obj, range=range_name, resolution=resolution, points=points)
