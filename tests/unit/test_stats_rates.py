"""Rates from libvirt's counters: CPU %, bytes per second, and what counts as no reading."""

import pytest

from stats.objects import parse_label, stat_object
from stats.rates import HostCounters, VmCounters, host_cpu_pct, per_second, vm_cpu_pct, vm_rates

S = 1_000_000_000  # one second in ns


def test_one_vcpu_busy_half_the_time_is_50_percent():
    assert vm_cpu_pct(10 * S, 15 * S, 10 * S, 1) == pytest.approx(50.0)


def test_cpu_percent_is_of_all_vcpus():
    # 10 s of CPU time in 10 s of wall time is one of four vCPUs: 25 %.
    assert vm_cpu_pct(0, 10 * S, 10 * S, 4) == pytest.approx(25.0)


def test_cpu_percent_is_clamped_to_100_on_jitter():
    assert vm_cpu_pct(0, 10_100_000_000, 10 * S, 1) == 100.0


@pytest.mark.parametrize(
    ("before", "after", "elapsed", "vcpus"),
    [
        (None, 5 * S, 10 * S, 1),  # first reading
        (5 * S, None, 10 * S, 1),  # not reported
        (9 * S, 2 * S, 10 * S, 1),  # counter went back: the guest restarted
        (0, 5 * S, 0, 1),  # no time passed
        (0, 5 * S, 10 * S, None),  # vCPU count unknown
        (0, 5 * S, 10 * S, 0),
    ],
)
def test_cpu_percent_is_unknown_rather_than_guessed(before, after, elapsed, vcpus):
    assert vm_cpu_pct(before, after, elapsed, vcpus) is None


def test_bytes_per_second():
    assert per_second(1000, 21_000, 10 * S) == pytest.approx(2000.0)
    assert per_second(1000, 1000, 10 * S) == 0.0
    assert per_second(5000, 1000, 10 * S) is None
    assert per_second(None, 1000, 10 * S) is None


def test_vm_rates_use_the_wall_time_between_readings():
    before = VmCounters(at_ns=100 * S, cpu_time_ns=0, block_rd_bytes=0, block_wr_bytes=1000, net_rx_bytes=None,
                        net_tx_bytes=0)  # fmt: skip
    after = VmCounters(at_ns=105 * S, cpu_time_ns=S, block_rd_bytes=5 * 4096, block_wr_bytes=1000,
                       net_rx_bytes=700, net_tx_bytes=500)  # fmt: skip
    rates = vm_rates(before, after, vcpus=2)
    assert rates.cpu_pct == pytest.approx(10.0)
    assert rates.disk_rd_bps == pytest.approx(4096.0)
    assert rates.disk_wr_bps == 0.0
    assert rates.net_rx_bps is None
    assert rates.net_tx_bps == pytest.approx(100.0)


def test_vm_rates_without_a_previous_reading_are_all_unknown():
    after = VmCounters(at_ns=S, cpu_time_ns=S, block_rd_bytes=1, block_wr_bytes=1, net_rx_bytes=1, net_tx_bytes=1)
    assert vm_rates(None, after, vcpus=1).cpu_pct is None


def test_host_cpu_percent_counts_kernel_and_user_as_busy_and_iowait_as_not():
    before = HostCounters(at_ns=0, kernel_ns=100, user_ns=100, idle_ns=100, iowait_ns=100)
    after = HostCounters(at_ns=S, kernel_ns=200, user_ns=300, idle_ns=350, iowait_ns=250)
    # busy 100 + 200, of 100 + 200 + 250 + 150
    assert host_cpu_pct(before, after) == pytest.approx(300 / 700 * 100)


def test_host_cpu_percent_of_counters_that_do_not_move_is_unknown():
    # The test driver reports the same fixed CPU times every time.
    same = HostCounters(at_ns=0, kernel_ns=5, user_ns=5, idle_ns=5, iowait_ns=5)
    assert host_cpu_pct(same, HostCounters(at_ns=S, kernel_ns=5, user_ns=5, idle_ns=5, iowait_ns=5)) is None
    assert host_cpu_pct(None, same) is None


def test_counters_survive_a_round_trip_through_redis_form():
    counters = VmCounters(at_ns=1, cpu_time_ns=2, block_rd_bytes=None, block_wr_bytes=4, net_rx_bytes=5,
                          net_tx_bytes=6)  # fmt: skip
    assert VmCounters.load(counters.dump()) == counters


def test_object_labels_are_parsed_strictly_and_canonically():
    assert parse_label("vm:6695EB01-F6A4-8304-79AA-97F2502E193F").label == "vm:6695eb01-f6a4-8304-79aa-97f2502e193f"
    assert parse_label("host:3").label == "host:3"
    assert parse_label("host:3").group == "stats.host.3"
    for bad in ["host:03", "host:-1", "host:x", "vm:nope", "disk:1", "", None, 3, "vm:" + "a" * 80]:
        assert parse_label(bad) is None
    assert stat_object("host", "0") is None
