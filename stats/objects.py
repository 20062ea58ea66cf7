"""What a series belongs to ("vm:<uuid>", "host:<id>"), and the resolutions it is kept at."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kvmweb.realtime import groups

# Seconds between samples, and the resolutions the rollups make from them.
SAMPLE_EVERY = 10
MINUTE = 60
TEN_MINUTES = 600

# How long each resolution is kept.
RETENTION = {
    SAMPLE_EVERY: timedelta(hours=1),
    MINUTE: timedelta(days=1),
    TEN_MINUTES: timedelta(days=30),
}
# What each coarser resolution is made from.
ROLLUP_SOURCE = {MINUTE: SAMPLE_EVERY, TEN_MINUTES: MINUTE}
# A chart's range, and the resolution that draws it.
RANGES = {"1h": SAMPLE_EVERY, "1d": MINUTE, "30d": TEN_MINUTES}

_KEY = {
    "vm": re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"),
    "host": re.compile(r"[1-9][0-9]{0,17}"),
}


@dataclass(frozen=True, slots=True, order=True)
class StatObject:
    kind: str  # "vm" or "host"
    key: str  # canonical: a lower-case UUID with hyphens, or a host id without leading zeros

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.key}"

    @property
    def group(self) -> str:
        return groups.stats_group(self.kind, self.key)


def stat_object(kind: str, key: str) -> StatObject | None:
    """The object named by `kind` and `key`, in canonical form; None when either is malformed."""
    pattern = _KEY.get(kind)
    if pattern is None or not isinstance(key, str) or not pattern.fullmatch(key):
        return None
    return StatObject(kind, str(uuid.UUID(key)) if kind == "vm" else key)


def parse_label(label: object) -> StatObject | None:
    """ "vm:<uuid>" or "host:<id>" from an untrusted client; None when malformed."""
    if not isinstance(label, str) or len(label) > 64:
        return None
    kind, _, key = label.partition(":")
    return stat_object(kind, key)


def bucket_start(moment: datetime, seconds: int) -> datetime:
    """The start of the `seconds`-long bucket holding `moment` (buckets align to the epoch)."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)
