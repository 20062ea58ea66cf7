"""Rates from two readings of libvirt's ever-growing counters. Pure functions, no I/O.

libvirt reports totals (CPU nanoseconds, bytes read since the guest started); a rate is the
difference between two readings over the wall time between them. A counter that went backwards
(the guest restarted, a disk was unplugged) or a reading that is missing gives None, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class VmCounters:
    """One VM's cumulative counters, read at `at_ns` (wall clock, nanoseconds since the epoch)."""

    at_ns: int
    cpu_time_ns: int | None
    block_rd_bytes: int | None
    block_wr_bytes: int | None
    net_rx_bytes: int | None
    net_tx_bytes: int | None

    def dump(self) -> list[int | None]:
        return [
            self.at_ns,
            self.cpu_time_ns,
            self.block_rd_bytes,
            self.block_wr_bytes,
            self.net_rx_bytes,
            self.net_tx_bytes,
        ]

    @classmethod
    def load(cls, values: list[int | None]) -> VmCounters:
        at_ns, cpu, rd, wr, rx, tx = values
        return cls(int(at_ns or 0), cpu, rd, wr, rx, tx)


@dataclass(frozen=True, slots=True)
class HostCounters:
    """A host's cumulative CPU times (nanoseconds, all CPUs together), read at `at_ns`."""

    at_ns: int
    kernel_ns: int | None
    user_ns: int | None
    idle_ns: int | None
    iowait_ns: int | None

    def dump(self) -> list[int | None]:
        return [self.at_ns, self.kernel_ns, self.user_ns, self.idle_ns, self.iowait_ns]

    @classmethod
    def load(cls, values: list[int | None]) -> HostCounters:
        at_ns, kernel, user, idle, iowait = values
        return cls(int(at_ns or 0), kernel, user, idle, iowait)


@dataclass(frozen=True, slots=True)
class VmRates:
    cpu_pct: float | None
    disk_rd_bps: float | None
    disk_wr_bps: float | None
    net_rx_bps: float | None
    net_tx_bps: float | None


NO_VM_RATES = VmRates(None, None, None, None, None)


def _delta(before: int | None, after: int | None) -> int | None:
    if before is None or after is None or after < before:
        return None
    return after - before


def per_second(before: int | None, after: int | None, elapsed_ns: int) -> float | None:
    """How fast a counter grew, per second; None if unknown or reset."""
    delta = _delta(before, after)
    if delta is None or elapsed_ns <= 0:
        return None
    return delta * NS_PER_S / elapsed_ns


def vm_cpu_pct(before_ns: int | None, after_ns: int | None, elapsed_ns: int, vcpus: int | None) -> float | None:
    """Share of the VM's vCPUs it kept busy: delta cpu_time / (delta wall * vCPUs) * 100, in 0..100."""
    delta = _delta(before_ns, after_ns)
    if delta is None or elapsed_ns <= 0 or not vcpus:
        return None
    return _clamp(delta / (elapsed_ns * vcpus) * 100)


def vm_rates(before: VmCounters | None, after: VmCounters, vcpus: int | None) -> VmRates:
    if before is None:
        return NO_VM_RATES
    elapsed = after.at_ns - before.at_ns
    if elapsed <= 0:
        return NO_VM_RATES
    return VmRates(
        cpu_pct=vm_cpu_pct(before.cpu_time_ns, after.cpu_time_ns, elapsed, vcpus),
        disk_rd_bps=per_second(before.block_rd_bytes, after.block_rd_bytes, elapsed),
        disk_wr_bps=per_second(before.block_wr_bytes, after.block_wr_bytes, elapsed),
        net_rx_bps=per_second(before.net_rx_bytes, after.net_rx_bytes, elapsed),
        net_tx_bps=per_second(before.net_tx_bytes, after.net_tx_bytes, elapsed),
    )


def host_cpu_pct(before: HostCounters | None, after: HostCounters) -> float | None:
    """Busy share of all the host's CPUs: (kernel + user) / (kernel + user + idle + iowait), in 0..100.

    Time waiting for I/O counts as not busy, as top and Cockpit show it.
    """
    if before is None:
        return None
    deltas = [
        _delta(before.kernel_ns, after.kernel_ns),
        _delta(before.user_ns, after.user_ns),
        _delta(before.idle_ns, after.idle_ns),
        _delta(before.iowait_ns, after.iowait_ns),
    ]
    kernel, user, idle, iowait = deltas
    if kernel is None or user is None or idle is None:
        return None
    total = kernel + user + idle + (iowait or 0)
    if total <= 0:
        return None  # the counters did not move (a simulated host): no reading, not 0 %
    return _clamp((kernel + user) / total * 100)


def _clamp(pct: float) -> float:
    # Sampling jitter can push a fully busy guest a hair over 100 %.
    return min(100.0, max(0.0, pct))
