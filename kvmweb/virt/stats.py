"""Counters for charts and the inventory's bulk domain query: domains in one call, the host in two.

Every figure is what libvirt reported; one it did not report (an old driver, a guest without a
balloon driver, the test driver) is None, never 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import libvirt

from kvmweb.virt.connection import Connection, connect
from kvmweb.virt.errors import Unsupported, translated
from kvmweb.virt.target import HostTarget
from kvmweb.virt.types import DomainStats, HostStats, KsmInfo

Domain = Any  # a libvirt.virDomain; it never leaves the package
StatsRecord = tuple[Domain, dict[str, Any]]

# Without NOWAIT, one guest busy in a long job (a migration, a dump) stalls the whole query; with
# it, that guest's job-bound figures are just left out (and become None).
_NOWAIT = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT

_COUNTER_GROUPS = (
    libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_BLOCK
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_VCPU
)


def all_domain_stats(conn: Connection, groups: int, *, active_only: bool = False) -> list[StatsRecord]:
    """One virConnectGetAllDomainStats call (two if the host predates the NOWAIT flag)."""
    flags = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE if active_only else 0
    return _without_nowait_if_refused(lambda extra: conn.getAllDomainStats(groups, flags | extra))


def domain_list_stats(conn: Connection, domains: Sequence[Domain], groups: int) -> list[StatsRecord]:
    """virDomainListGetStats for a few known domains, with the same NOWAIT fallback."""
    return _without_nowait_if_refused(lambda extra: conn.domainListGetStats(list(domains), groups, extra))


def _without_nowait_if_refused(call: Any) -> list[StatsRecord]:
    try:
        return list(call(_NOWAIT))
    except libvirt.libvirtError as exc:
        # libvirt older than 4.5 refuses the unknown flag with "unsupported flags".
        if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
            raise
        return list(call(0))


def get_domain_stats(target: HostTarget) -> tuple[DomainStats, ...]:
    """Counters of every running domain from ONE getAllDomainStats call (active domains only)."""
    with connect(target) as conn:
        records = all_domain_stats(conn, _COUNTER_GROUPS, active_only=True)
        return tuple(domain_stats_from(str(dom.UUIDString()), stats) for dom, stats in records)


def domain_stats_from(uuid: str, stats: Mapping[str, Any]) -> DomainStats:
    """Fold one domain's typed-parameter record (``cpu.time``, ``block.0.rd.bytes``...) into DomainStats."""
    memory_kib = _int(stats, "balloon.current")
    return DomainStats(
        uuid=uuid,
        cpu_time_ns=_int(stats, "cpu.time"),
        vcpus=_int(stats, "vcpu.current"),
        memory_kib=memory_kib,
        memory_used_kib=_memory_used(stats, memory_kib),
        block_rd_bytes=_device_sum(stats, "block", "rd.bytes"),
        block_wr_bytes=_device_sum(stats, "block", "wr.bytes"),
        net_rx_bytes=_device_sum(stats, "net", "rx.bytes"),
        net_tx_bytes=_device_sum(stats, "net", "tx.bytes"),
    )


def _int(stats: Mapping[str, Any], key: str) -> int | None:
    value = stats.get(key)
    return int(value) if isinstance(value, int) else None


def _memory_used(stats: Mapping[str, Any], memory_kib: int | None) -> int | None:
    unused = _int(stats, "balloon.unused")
    if memory_kib is not None and unused is not None:
        # The guest's own view: what it has minus what it says is free.
        return max(memory_kib - unused, 0)
    return _int(stats, "balloon.rss")


def _device_sum(stats: Mapping[str, Any], group: str, field: str) -> int | None:
    """Sum ``<group>.<i>.<field>`` over ``<group>.count`` devices; None if no device reported it."""
    count = _int(stats, f"{group}.count")
    if count is None:
        return None
    if count == 0:
        return 0  # no disks (or NICs) really means nothing was read or sent
    values = [_int(stats, f"{group}.{index}.{field}") for index in range(count)]
    reported = [value for value in values if value is not None]
    return sum(reported) if reported else None


def get_host_stats(target: HostTarget) -> HostStats:
    """Host CPU times (getCPUStats over all CPUs) and memory (getMemoryStats over all cells): 2 calls."""
    with connect(target) as conn:
        cpu = _supported(lambda: conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS))
        memory = _supported(lambda: conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS))
    return HostStats(
        cpu_kernel_ns=_int(cpu, "kernel"),
        cpu_user_ns=_int(cpu, "user"),
        cpu_idle_ns=_int(cpu, "idle"),
        cpu_iowait_ns=_int(cpu, "iowait"),
        memory_total_kib=_int(memory, "total"),
        memory_free_kib=_int(memory, "free"),
        memory_buffers_kib=_int(memory, "buffers"),
        memory_cached_kib=_int(memory, "cached"),
    )


def get_host_memory_params(target: HostTarget) -> KsmInfo | None:
    """KSM figures from virNodeGetMemoryParameters (1 call); None when the driver has none."""
    with connect(target) as conn:
        params = _supported(lambda: conn.getMemoryParameters(0))
    return ksm_info_from(params) if params else None


def ksm_info_from(params: Mapping[str, Any]) -> KsmInfo:
    merge = _int(params, "shm_merge_across_nodes")
    return KsmInfo(
        shm_pages_shared=_int(params, "shm_pages_shared"),
        shm_pages_sharing=_int(params, "shm_pages_sharing"),
        shm_pages_unshared=_int(params, "shm_pages_unshared"),
        shm_pages_volatile=_int(params, "shm_pages_volatile"),
        shm_full_scans=_int(params, "shm_full_scans"),
        shm_merge_across_nodes=None if merge is None else bool(merge),
        shm_pages_to_scan=_int(params, "shm_pages_to_scan"),
        shm_sleep_millisecs=_int(params, "shm_sleep_millisecs"),
    )


def _supported(call: Any) -> dict[str, Any]:
    """The call's dict, or an empty one when the driver does not implement it."""
    try:
        with translated():
            return dict(call())
    except Unsupported:
        return {}
