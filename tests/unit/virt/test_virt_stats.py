"""Domain and host counters: what libvirt reports is passed on, what it does not is None."""

from __future__ import annotations

import json

from kvmweb import virt
from kvmweb.virt.stats import domain_stats_from, ksm_info_from

# What qemu reports for a guest with two disks, one NIC and a balloon driver with stats enabled.
QEMU_RECORD = {
    "state.state": 1,
    "state.reason": 1,
    "cpu.time": 123456789000,
    "cpu.user": 100000000000,
    "cpu.system": 20000000000,
    "balloon.current": 2097152,
    "balloon.maximum": 4194304,
    "balloon.unused": 1572864,
    "balloon.available": 2000000,
    "balloon.rss": 700000,
    "vcpu.current": 2,
    "vcpu.maximum": 4,
    "block.count": 2,
    "block.0.name": "vda",
    "block.0.rd.bytes": 1000,
    "block.0.wr.bytes": 2000,
    "block.1.name": "sda",
    "block.1.rd.bytes": 30,
    "block.1.wr.bytes": 40,
    "net.count": 1,
    "net.0.name": "vnet0",
    "net.0.rx.bytes": 555,
    "net.0.tx.bytes": 666,
}
UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def test_counters_are_summed_over_devices() -> None:
    assert domain_stats_from(UUID, QEMU_RECORD) == virt.DomainStats(
        uuid=UUID,
        cpu_time_ns=123456789000,
        vcpus=2,
        memory_kib=2097152,
        memory_used_kib=2097152 - 1572864,
        block_rd_bytes=1030,
        block_wr_bytes=2040,
        net_rx_bytes=555,
        net_tx_bytes=666,
    )


def test_memory_used_falls_back_to_rss_and_then_to_none() -> None:
    without_guest_stats = {key: value for key, value in QEMU_RECORD.items() if key != "balloon.unused"}
    without_rss = {key: value for key, value in without_guest_stats.items() if key != "balloon.rss"}

    assert domain_stats_from(UUID, without_guest_stats).memory_used_kib == 700000
    assert domain_stats_from(UUID, without_rss).memory_used_kib is None


def test_missing_groups_are_none_and_no_devices_is_zero() -> None:
    partial = {"cpu.time": 5, "block.count": 0, "net.count": 2, "net.1.rx.bytes": 9}

    stats = domain_stats_from(UUID, partial)

    assert (stats.cpu_time_ns, stats.vcpus, stats.memory_kib, stats.memory_used_kib) == (5, None, None, None)
    assert (stats.block_rd_bytes, stats.block_wr_bytes) == (0, 0)
    # One NIC of two reported its received bytes; nobody reported sent bytes.
    assert (stats.net_rx_bytes, stats.net_tx_bytes) == (9, None)


def test_test_driver_domains_report_no_counters(target: virt.HostTarget, scratch_domain: virt.DomainSummary) -> None:
    found = virt.get_domain_stats(target)

    # Only running domains, and the test driver has none of these stats groups.
    assert found == (
        virt.DomainStats(
            uuid=UUID,
            cpu_time_ns=None,
            vcpus=None,
            memory_kib=None,
            memory_used_kib=None,
            block_rd_bytes=None,
            block_wr_bytes=None,
            net_rx_bytes=None,
            net_tx_bytes=None,
        ),
    )
    assert json.loads(json.dumps(found[0].to_dict())) == found[0].to_dict()


def test_host_stats_report_cpu_times_and_no_memory_on_the_test_driver(target: virt.HostTarget) -> None:
    host = virt.get_host_stats(target)

    cpu = (host.cpu_kernel_ns, host.cpu_user_ns, host.cpu_idle_ns, host.cpu_iowait_ns)
    assert all(isinstance(value, int) and value > 0 for value in cpu)
    # virNodeGetMemoryStats is not implemented by the test driver.
    memory = (host.memory_total_kib, host.memory_free_kib, host.memory_buffers_kib, host.memory_cached_kib)
    assert memory == (None, None, None, None)


def test_ksm_is_none_where_the_driver_has_no_memory_parameters(target: virt.HostTarget) -> None:
    assert virt.get_host_memory_params(target) is None


def test_ksm_parameters_are_read_by_name() -> None:
    params = {
        "shm_pages_to_scan": 100,
        "shm_sleep_millisecs": 20,
        "shm_pages_shared": 1200,
        "shm_pages_sharing": 5400,
        "shm_pages_unshared": 33000,
        "shm_pages_volatile": 870,
        "shm_full_scans": 42,
        "shm_merge_across_nodes": 1,
    }

    assert ksm_info_from(params) == virt.KsmInfo(
        shm_pages_shared=1200,
        shm_pages_sharing=5400,
        shm_pages_unshared=33000,
        shm_pages_volatile=870,
        shm_full_scans=42,
        shm_merge_across_nodes=True,
        shm_pages_to_scan=100,
        shm_sleep_millisecs=20,
    )
    assert ksm_info_from({"shm_full_scans": 3}).shm_merge_across_nodes is None
