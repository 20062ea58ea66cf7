"""Sampling: one bulk stats call per host per interval, turned into rates, stored as one
bulk insert, and pushed only to the pages that show the objects."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hosts.models import Host
from kvmweb import virt
from kvmweb.realtime.publish import publish
from stats import store
from stats.models import StatSample
from stats.objects import SAMPLE_EVERY, StatObject, bucket_start
from stats.rates import NS_PER_S, HostCounters, VmCounters, host_cpu_pct, vm_rates
from vms.nic_addresses import addresses_sample_host

log = logging.getLogger(__name__)

METRICS = ("cpu_pct", "mem_used_kib", "mem_total_kib", "disk_rd_bps", "disk_wr_bps", "net_rx_bps", "net_tx_bps")
UNIQUE = ["kind", "object_key", "resolution", "ts"]
BATCH = 1000


@dataclass(frozen=True, slots=True)
class SampleRound:
    host_id: int
    rows: int
    published: int


@dataclass(frozen=True, slots=True)
class Reading:
    """What one round read from a host: every running domain's counters and the host's own."""

    domains: Sequence[virt.DomainStats]
    domains_at_ns: int
    host: virt.HostStats | None
    host_at_ns: int


def hosts_to_sample() -> list[int]:
    """Hosts whose last contact succeeded; an unreachable one is the watcher's to bring back."""
    return list(Host.objects.filter(enabled=True, state=Host.State.CONNECTED).values_list("pk", flat=True))


def stats_sample_host(*, host_id: int) -> SampleRound | None:
    """Sample one host; None when it was skipped (gone, disabled, unreachable, already in a round)."""
    host = Host.objects.filter(pk=host_id, enabled=True, state=Host.State.CONNECTED).first()
    if host is None:
        return None
    with store.host_round(host_id) as mine:
        if not mine:
            log.info("stats: host %s is still in its previous round; skipping this one", host_id)
            return None
        reading = read_host(host.virt_target())
        if reading is None:
            return None
        done = stats_record(host_id=host_id, reading=reading)
        # The running VMs' NIC addresses ride along, at their own slower pace (vms/nic_addresses.py).
        addresses_sample_host(host=host, running=[d.uuid for d in reading.domains])
        return done


def read_host(target: virt.HostTarget) -> Reading | None:
    """Two libvirt calls: every running domain's stats at once, then the host's CPU and memory."""
    try:
        domains = virt.get_domain_stats(target)
        domains_at = time.time_ns()
    except virt.VirtError as exc:
        # Quietly: the events watcher and the reconcile mark the host's state and say why.
        log.info("stats: could not read %s: %s", target.uri, exc)
        return None
    try:
        host: virt.HostStats | None = virt.get_host_stats(target)
    except virt.HostUnreachable as exc:
        log.info("stats: could not read %s: %s", target.uri, exc)
        return None
    except virt.VirtError as exc:
        log.debug("stats: %s reports no host statistics: %s", target.uri, exc)
        host = None
    return Reading(domains=domains, domains_at_ns=domains_at, host=host, host_at_ns=time.time_ns())


def stats_record(*, host_id: int, reading: Reading) -> SampleRound:
    """Turn a reading into 10 s points (rates against the previous round's counters) and publish
    the watched ones."""
    ts = bucket_start(datetime.fromtimestamp(reading.domains_at_ns / NS_PER_S, tz=UTC), SAMPLE_EVERY)
    current = store.Counters(
        host=_host_counters(reading.host, reading.host_at_ns) if reading.host else None,
        vms={d.uuid: _vm_counters(d, reading.domains_at_ns) for d in reading.domains},
    )
    previous = store.counters_swap(host_id, current)

    rows = [_vm_row(d, ts, previous.vms.get(d.uuid), current.vms[d.uuid]) for d in reading.domains]
    rows.append(_host_row(host_id, ts, reading.host, previous.host, current.host, rows))
    # Two rounds in one 10 s bucket (a late beat tick): the later reading, with its rates, stands.
    StatSample.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=UNIQUE, update_fields=list(METRICS), batch_size=BATCH
    )
    return SampleRound(host_id=host_id, rows=len(rows), published=publish_watched(rows))


def publish_watched(rows: Iterable[StatSample]) -> int:
    """Send each point some page watches to that object's stats group; the rest go nowhere."""
    watched = store.watched()
    if not watched:
        return 0
    sent = 0
    for row in rows:
        obj = StatObject(row.kind, row.object_key)
        if obj.label in watched:
            publish(obj.group, sample_message(row))
            sent += 1
    return sent


def sample_message(row: StatSample) -> dict[str, Any]:
    return {
        "type": "stats",
        "object": f"{row.kind}:{row.object_key}",
        "ts": int(row.ts.timestamp()),
        **{metric: getattr(row, metric) for metric in METRICS},
    }


# ---------------------------------------------------------------- rows


def _vm_counters(d: virt.DomainStats, at_ns: int) -> VmCounters:
    return VmCounters(
        at_ns=at_ns,
        cpu_time_ns=d.cpu_time_ns,
        block_rd_bytes=d.block_rd_bytes,
        block_wr_bytes=d.block_wr_bytes,
        net_rx_bytes=d.net_rx_bytes,
        net_tx_bytes=d.net_tx_bytes,
    )


def _host_counters(h: virt.HostStats, at_ns: int) -> HostCounters:
    return HostCounters(
        at_ns=at_ns,
        kernel_ns=h.cpu_kernel_ns,
        user_ns=h.cpu_user_ns,
        idle_ns=h.cpu_idle_ns,
        iowait_ns=h.cpu_iowait_ns,
    )


def _vm_row(d: virt.DomainStats, ts: datetime, before: VmCounters | None, after: VmCounters) -> StatSample:
    rates = vm_rates(before, after, d.vcpus)
    return StatSample(
        kind=StatSample.Kind.VM,
        object_key=d.uuid,
        resolution=SAMPLE_EVERY,
        ts=ts,
        cpu_pct=_round(rates.cpu_pct, 2),
        mem_used_kib=d.memory_used_kib,
        mem_total_kib=d.memory_kib,
        disk_rd_bps=_round(rates.disk_rd_bps, 1),
        disk_wr_bps=_round(rates.disk_wr_bps, 1),
        net_rx_bps=_round(rates.net_rx_bps, 1),
        net_tx_bps=_round(rates.net_tx_bps, 1),
    )


def _host_row(
    host_id: int,
    ts: datetime,
    stats: virt.HostStats | None,
    before: HostCounters | None,
    after: HostCounters | None,
    vm_rows: list[StatSample],
) -> StatSample:
    """The host's CPU and memory as libvirt reports them; its disk and network are its guests' sums."""
    return StatSample(
        kind=StatSample.Kind.HOST,
        object_key=str(host_id),
        resolution=SAMPLE_EVERY,
        ts=ts,
        cpu_pct=_round(host_cpu_pct(before, after), 2) if after else None,
        mem_used_kib=_host_memory_used(stats) if stats else None,
        mem_total_kib=stats.memory_total_kib if stats else None,
        disk_rd_bps=_sum(row.disk_rd_bps for row in vm_rows),
        disk_wr_bps=_sum(row.disk_wr_bps for row in vm_rows),
        net_rx_bps=_sum(row.net_rx_bps for row in vm_rows),
        net_tx_bps=_sum(row.net_tx_bps for row in vm_rows),
    )


def _host_memory_used(stats: virt.HostStats) -> int | None:
    """Memory in use by programs: total minus free, buffers and page cache (as `free` shows it)."""
    if stats.memory_total_kib is None or stats.memory_free_kib is None:
        return None
    used = stats.memory_total_kib - stats.memory_free_kib
    used -= (stats.memory_buffers_kib or 0) + (stats.memory_cached_kib or 0)
    return max(0, used)


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), 1) if known else None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
