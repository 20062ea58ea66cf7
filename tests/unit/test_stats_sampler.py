"""Sampling rounds, downsampling and retention, on synthetic readings and the test driver."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from kvmweb import virt
from kvmweb.virt.types import DomainStats, HostStats
from stats import store
from stats.models import StatSample
from stats.services.rollup import stats_downsample, stats_prune
from stats.services.sampler import Reading, hosts_to_sample, stats_record, stats_sample_host
from tests.factories import make_host

S = 1_000_000_000
GIB_KIB = 1024 * 1024
VM_A = "6695eb01-f6a4-8304-79aa-97f2502e193f"
VM_B = "175ce09d-6f4e-41e4-90e0-9ee9450b63b3"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def stats_redis(settings):  # type: ignore[no-untyped-def]
    """A key prefix of this test's own on the real Redis, removed afterwards."""
    settings.KVMWEB_STATS_REDIS_PREFIX = f"kvmweb-test:{uuid.uuid4().hex}:stats:"
    yield
    keys = list(store.client().scan_iter(match=settings.KVMWEB_STATS_REDIS_PREFIX + "*"))
    if keys:
        store.client().delete(*keys)


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * S


def domain(uuid_: str, *, cpu_s: float, rd: int = 0, wr: int = 0, rx: int = 0, tx: int = 0, vcpus: int = 1):
    return DomainStats(
        uuid=uuid_,
        cpu_time_ns=int(cpu_s * S),
        vcpus=vcpus,
        memory_kib=2 * GIB_KIB,
        memory_used_kib=GIB_KIB,
        block_rd_bytes=rd,
        block_wr_bytes=wr,
        net_rx_bytes=rx,
        net_tx_bytes=tx,
    )


def host_stats(*, kernel: int, user: int, idle: int, iowait: int = 0) -> HostStats:
    return HostStats(
        cpu_kernel_ns=kernel,
        cpu_user_ns=user,
        cpu_idle_ns=idle,
        cpu_iowait_ns=iowait,
        memory_total_kib=16 * GIB_KIB,
        memory_free_kib=8 * GIB_KIB,
        memory_buffers_kib=GIB_KIB,
        memory_cached_kib=2 * GIB_KIB,
    )


def reading(at: datetime, domains, host=None) -> Reading:  # type: ignore[no-untyped-def]
    return Reading(domains=tuple(domains), domains_at_ns=ns(at), host=host, host_at_ns=ns(at))


def point(kind: str, key: str, ts: datetime, resolution: int = 10) -> dict:
    row = StatSample.objects.get(kind=kind, object_key=key, resolution=resolution, ts=ts)
    return {field: getattr(row, field) for field in (
        "cpu_pct", "mem_used_kib", "mem_total_kib", "disk_rd_bps", "disk_wr_bps", "net_rx_bps", "net_tx_bps",
    )}  # fmt: skip


# ---------------------------------------------------------------- a round


def test_first_round_stores_levels_and_no_rates(db):  # type: ignore[no-untyped-def]
    done = stats_record(host_id=7, reading=reading(T0, [domain(VM_A, cpu_s=100)], host_stats(kernel=0, user=0, idle=0)))

    assert (done.rows, done.published) == (2, 0)
    assert point("vm", VM_A, T0) == {
        "cpu_pct": None, "mem_used_kib": GIB_KIB, "mem_total_kib": 2 * GIB_KIB,
        "disk_rd_bps": None, "disk_wr_bps": None, "net_rx_bps": None, "net_tx_bps": None,
    }  # fmt: skip
    assert point("host", "7", T0)["mem_used_kib"] == 5 * GIB_KIB  # 16 - 8 free - 1 buffers - 2 cached


def test_second_round_turns_counters_into_rates(db):  # type: ignore[no-untyped-def]
    first = [domain(VM_A, cpu_s=100, vcpus=2), domain(VM_B, cpu_s=0)]
    stats_record(host_id=7, reading=reading(T0, first, host_stats(kernel=0, user=0, idle=0)))
    later = T0 + timedelta(seconds=10)
    second = [
        domain(VM_A, cpu_s=110, vcpus=2, rd=40_960, wr=10_240, rx=1000, tx=2000),  # 10 s of 20 s of vCPU
        domain(VM_B, cpu_s=2.5, rd=4096),
    ]
    stats_record(host_id=7, reading=reading(later, second, host_stats(kernel=10 * S, user=30 * S, idle=60 * S)))

    assert point("vm", VM_A, later) == {
        "cpu_pct": 50.0, "mem_used_kib": GIB_KIB, "mem_total_kib": 2 * GIB_KIB,
        "disk_rd_bps": 4096.0, "disk_wr_bps": 1024.0, "net_rx_bps": 100.0, "net_tx_bps": 200.0,
    }  # fmt: skip
    assert point("vm", VM_B, later)["cpu_pct"] == 25.0
    # The host's CPU from its own counters; its disk and network are its guests' sums.
    assert point("host", "7", later) == {
        "cpu_pct": 40.0, "mem_used_kib": 5 * GIB_KIB, "mem_total_kib": 16 * GIB_KIB,
        "disk_rd_bps": 4505.6, "disk_wr_bps": 1024.0, "net_rx_bps": 100.0, "net_tx_bps": 200.0,
    }  # fmt: skip


def test_two_rounds_in_one_10_second_bucket_keep_the_later_reading(db):  # type: ignore[no-untyped-def]
    stats_record(host_id=7, reading=reading(T0 + timedelta(seconds=3), [domain(VM_A, cpu_s=1)]))
    stats_record(host_id=7, reading=reading(T0 + timedelta(seconds=7), [domain(VM_A, cpu_s=2)]))  # same bucket

    assert list(StatSample.objects.filter(kind="vm").values_list("ts", "cpu_pct")) == [(T0, 25.0)]


def test_a_restarted_guest_has_no_rate_for_one_round(db):  # type: ignore[no-untyped-def]
    stats_record(host_id=7, reading=reading(T0, [domain(VM_A, cpu_s=500, rd=10**9)]))
    later = T0 + timedelta(seconds=10)
    stats_record(host_id=7, reading=reading(later, [domain(VM_A, cpu_s=1, rd=4096)]))

    assert point("vm", VM_A, later)["cpu_pct"] is None
    assert point("vm", VM_A, later)["disk_rd_bps"] is None


def test_one_round_is_one_insert_and_no_other_query(db, django_assert_max_num_queries):  # type: ignore[no-untyped-def]
    domains = [domain(str(uuid.uuid4()), cpu_s=1) for _ in range(300)]
    with django_assert_max_num_queries(1):
        stats_record(host_id=7, reading=reading(T0, domains))
    assert StatSample.objects.count() == 301


def test_unreachable_host_is_skipped_quietly(db, monkeypatch):  # type: ignore[no-untyped-def]
    host = make_host("far", uri="qemu+ssh://nobody@far.invalid/system")

    def refuse(target):  # type: ignore[no-untyped-def]
        raise virt.HostUnreachable("no route to host")

    monkeypatch.setattr(virt, "get_domain_stats", refuse)
    assert stats_sample_host(host_id=host.pk) is None
    assert not StatSample.objects.exists()


def test_only_connected_enabled_hosts_are_sampled(db):  # type: ignore[no-untyped-def]
    on = make_host("on")
    make_host("off", enabled=False)
    make_host("down", state="unreachable")
    assert hosts_to_sample() == [on.pk]


def test_a_host_already_in_a_round_is_not_sampled_again(db, monkeypatch):  # type: ignore[no-untyped-def]
    host = make_host("busy")
    monkeypatch.setattr(virt, "get_domain_stats", lambda target: pytest.fail("the adapter was called"))
    with store.host_round(host.pk) as mine:
        assert mine
        assert stats_sample_host(host_id=host.pk) is None


def test_test_driver_host_stores_none_for_what_it_does_not_report(db):  # type: ignore[no-untyped-def]
    host = make_host("sim", uri="test:///default")
    assert stats_sample_host(host_id=host.pk).rows == 2  # type: ignore[union-attr]
    assert stats_sample_host(host_id=host.pk) is not None

    vm = StatSample.objects.filter(kind="vm").order_by("-ts").first()
    assert vm is not None and vm.object_key == "6695eb01-f6a4-8304-79aa-97f2502e193f"
    assert [vm.cpu_pct, vm.mem_used_kib, vm.mem_total_kib, vm.disk_rd_bps, vm.net_tx_bps] == [None] * 5
    # Its CPU counters never move and it has no memory statistics: no reading, not 0 %.
    host_row = StatSample.objects.filter(kind="host").order_by("-ts").first()
    assert host_row is not None and host_row.cpu_pct is None and host_row.mem_total_kib is None


# ---------------------------------------------------------------- downsampling


def add(kind: str, key: str, ts: datetime, resolution: int = 10, **metrics) -> None:  # type: ignore[no-untyped-def]
    StatSample.objects.create(kind=kind, object_key=key, resolution=resolution, ts=ts, **metrics)


def test_one_minute_points_average_their_six_10_second_points(db):  # type: ignore[no-untyped-def]
    for i, cpu in enumerate([10, 20, 30, 40, 50, 60]):
        add("vm", VM_A, T0 + timedelta(seconds=10 * i), cpu_pct=cpu, mem_used_kib=1000 + i, mem_total_kib=2000,
            disk_rd_bps=None if i % 2 else 600.0, net_tx_bps=None)  # fmt: skip
    add("vm", VM_A, T0 - timedelta(seconds=10), cpu_pct=99)  # the minute before
    add("vm", VM_A, T0 + timedelta(seconds=60), cpu_pct=1)  # the minute after, still open
    add("host", "7", T0 + timedelta(seconds=50), cpu_pct=5)

    written = stats_downsample(resolution=60, now=T0 + timedelta(seconds=60 + 25))

    minute = StatSample.objects.filter(resolution=60)
    assert {(r.kind, r.object_key, r.ts) for r in minute} == {
        ("vm", VM_A, T0 - timedelta(seconds=60)),
        ("vm", VM_A, T0),
        ("host", "7", T0),
    }
    assert written == 3
    assert point("vm", VM_A, T0, resolution=60) == {
        "cpu_pct": 35.0, "mem_used_kib": 1002, "mem_total_kib": 2000,  # 1002.5 rounds to even
        "disk_rd_bps": 600.0, "disk_wr_bps": None, "net_rx_bps": None, "net_tx_bps": None,
    }  # fmt: skip
    assert point("vm", VM_A, T0 - timedelta(seconds=60), resolution=60)["cpu_pct"] == 99.0


def test_an_open_minute_waits_until_its_last_samples_are_in(db):  # type: ignore[no-untyped-def]
    add("vm", VM_A, T0 + timedelta(seconds=50), cpu_pct=50)
    assert stats_downsample(resolution=60, now=T0 + timedelta(seconds=65)) == 0
    assert stats_downsample(resolution=60, now=T0 + timedelta(seconds=80)) == 1


def test_a_late_sample_is_folded_into_the_minute_on_the_next_run(db):  # type: ignore[no-untyped-def]
    add("vm", VM_A, T0, cpu_pct=10)
    stats_downsample(resolution=60, now=T0 + timedelta(seconds=90))
    add("vm", VM_A, T0 + timedelta(seconds=50), cpu_pct=30)
    stats_downsample(resolution=60, now=T0 + timedelta(seconds=150))

    assert point("vm", VM_A, T0, resolution=60)["cpu_pct"] == 20.0
    assert StatSample.objects.filter(resolution=60).count() == 1


def test_ten_minute_points_average_the_one_minute_points(db):  # type: ignore[no-untyped-def]
    for i in range(10):
        add("vm", VM_A, T0 + timedelta(minutes=i), resolution=60, cpu_pct=i * 10, net_rx_bps=100.0)
    add("vm", VM_A, T0 + timedelta(minutes=10), resolution=60, cpu_pct=100)  # next bucket, still open

    assert stats_downsample(resolution=600, now=T0 + timedelta(minutes=10, seconds=30)) == 1
    assert point("vm", VM_A, T0, resolution=600)["cpu_pct"] == 45.0
    assert point("vm", VM_A, T0, resolution=600)["net_rx_bps"] == 100.0


def test_downsampling_catches_up_after_beat_was_down_but_not_past_retention(db):  # type: ignore[no-untyped-def]
    now = T0 + timedelta(hours=2)
    for minutes in (10, 70, 100, 110):  # 10 is past the hour of 10 s points
        add("vm", VM_A, T0 + timedelta(minutes=minutes), cpu_pct=minutes)

    stats_downsample(resolution=60, now=now)

    assert sorted(StatSample.objects.filter(resolution=60).values_list("cpu_pct", flat=True)) == [70, 100, 110]


def test_downsampling_is_set_based(db, django_assert_max_num_queries):  # type: ignore[no-untyped-def]
    keys = [str(uuid.uuid4()) for _ in range(500)]
    StatSample.objects.bulk_create(
        StatSample(kind="vm", object_key=key, resolution=10, ts=T0 + timedelta(seconds=s), cpu_pct=1)
        for key in keys
        for s in (0, 10)
    )
    add("vm", VM_A, T0 - timedelta(minutes=1), resolution=60, cpu_pct=1)  # the last minute already made
    # One query to find where to start; per minute one aggregate and one upsert, whatever the VM count.
    with django_assert_max_num_queries(1 + 2 * 2):
        stats_downsample(resolution=60, now=T0 + timedelta(seconds=80))
    assert StatSample.objects.filter(resolution=60, ts=T0).count() == 500


# ---------------------------------------------------------------- retention


def test_pruning_keeps_each_resolution_for_its_retention(db):  # type: ignore[no-untyped-def]
    now = T0 + timedelta(days=40)
    ages = {
        10: [timedelta(minutes=59), timedelta(minutes=61)],
        60: [timedelta(hours=23), timedelta(hours=25)],
        600: [timedelta(days=29), timedelta(days=31)],
    }
    for resolution, (kept, dropped) in ages.items():
        add("vm", VM_A, now - kept, resolution=resolution)
        add("vm", VM_A, now - dropped, resolution=resolution)

    assert stats_prune(now=now) == 3

    remaining = set(StatSample.objects.values_list("resolution", "ts"))
    assert remaining == {(resolution, now - kept) for resolution, (kept, _) in ages.items()}


def test_pruning_drops_lapsed_watches(db):  # type: ignore[no-untyped-def]
    store.watch_renew(["vm:" + VM_A], now=1000)
    store.watch_renew(["host:7"], now=2000)
    assert store.watched(now=1050) == {"vm:" + VM_A, "host:7"}
    stats_prune(now=datetime.fromtimestamp(1070, tz=UTC))
    assert store.client().zcard(store.prefix() + "watched") == 1
    assert store.watched(now=1070) == {"host:7"}
