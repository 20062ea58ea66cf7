"""Downsampling (10 s → 1 min → 10 min, by averaging) and pruning past each resolution's retention.

Set-based: one aggregate query per target bucket (GROUP BY object) and one bulk upsert of its
results, whatever the number of objects; one DELETE per resolution.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Avg
from django.utils import timezone

from stats import store
from stats.models import StatSample
from stats.objects import RETENTION, ROLLUP_SOURCE, bucket_start
from stats.services.sampler import BATCH, METRICS, UNIQUE

# A bucket is rolled up once this long has passed since it ended, so the last samples are in.
SETTLE = timedelta(seconds=20)


def stats_downsample(*, resolution: int, now: datetime | None = None) -> int:
    """Average the finer points into every complete `resolution` bucket not yet made; rows written.

    The newest bucket already made is made again, so a sample that arrived late is counted;
    a run that was missed (beat down) is caught up, as far back as the finer points are kept.
    """
    source = ROLLUP_SOURCE[resolution]
    now = now or timezone.now()
    step = timedelta(seconds=resolution)
    end = bucket_start(now - SETTLE, resolution)
    oldest = bucket_start(now - RETENTION[source], resolution) + step
    newest = StatSample.objects.filter(resolution=resolution).order_by("-ts").values_list("ts", flat=True).first()
    start = max(newest, oldest) if newest else oldest
    written = 0
    while start < end:
        written += rollup_bucket(source=source, resolution=resolution, start=start)
        start += step
    return written


def rollup_bucket(*, source: int, resolution: int, start: datetime) -> int:
    """Average the `source` points in the bucket starting at `start` into `resolution` points; rows written."""
    groups = (
        StatSample.objects.filter(resolution=source, ts__gte=start, ts__lt=start + timedelta(seconds=resolution))
        .values("kind", "object_key")
        .annotate(
            cpu_pct=Avg("cpu_pct"),
            mem_used_kib=Avg("mem_used_kib"),
            mem_total_kib=Avg("mem_total_kib"),
            disk_rd_bps=Avg("disk_rd_bps"),
            disk_wr_bps=Avg("disk_wr_bps"),
            net_rx_bps=Avg("net_rx_bps"),
            net_tx_bps=Avg("net_tx_bps"),
        )
        .order_by()
    )
    rows = [
        StatSample(
            kind=group["kind"],
            object_key=group["object_key"],
            resolution=resolution,
            ts=start,
            cpu_pct=_round(group["cpu_pct"], 2),
            mem_used_kib=_int(group["mem_used_kib"]),
            mem_total_kib=_int(group["mem_total_kib"]),
            disk_rd_bps=_round(group["disk_rd_bps"], 1),
            disk_wr_bps=_round(group["disk_wr_bps"], 1),
            net_rx_bps=_round(group["net_rx_bps"], 1),
            net_tx_bps=_round(group["net_tx_bps"], 1),
        )
        for group in groups
    ]
    StatSample.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=UNIQUE, update_fields=list(METRICS), batch_size=BATCH
    )
    return len(rows)


def stats_prune(*, now: datetime | None = None) -> int:
    """Delete points older than their resolution keeps, and lapsed watches; rows deleted."""
    now = now or timezone.now()
    deleted = 0
    for resolution, keep in RETENTION.items():
        count, _ = StatSample.objects.filter(resolution=resolution, ts__lt=now - keep).delete()
        deleted += count
    store.watched_prune(now=now.timestamp())
    return deleted


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _int(value: float | None) -> int | None:
    return None if value is None else round(float(value))
