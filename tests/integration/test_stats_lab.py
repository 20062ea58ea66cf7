"""Stats from the real lab: a running tiny guest on qemu:///system, sampled through the adapter."""

import uuid

import pytest

from kvmweb import virt
from stats import store
from stats.models import StatSample
from stats.services.sampler import stats_sample_host
from tests.factories import make_host
from tests.lab.guests import Guest
from tests.stack import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def stats_redis(settings):  # type: ignore[no-untyped-def]
    settings.KVMWEB_STATS_REDIS_PREFIX = f"kvmweb-test:{uuid.uuid4().hex}:stats:"
    yield
    keys = list(store.client().scan_iter(match=settings.KVMWEB_STATS_REDIS_PREFIX + "*"))
    if keys:
        store.client().delete(*keys)


def test_two_rounds_give_the_running_guest_a_cpu_percent(running_tiny_guest: Guest, libvirt_host: str) -> None:
    host = make_host("lab-stats", uri=libvirt_host)

    first = stats_sample_host(host_id=host.pk)
    # The host's CPU counters come from /proc/stat, which moves in 10 ms ticks: a second round in
    # the same tick has no interval to measure. Wait for the counters to move, not for a time.
    before = virt.get_host_stats(host.virt_target())
    wait_until(lambda: _cpu_total(virt.get_host_stats(host.virt_target())) > _cpu_total(before), timeout=5,
               what="the host's CPU counters to move")  # fmt: skip
    second = stats_sample_host(host_id=host.pk)

    assert first is not None and second is not None
    assert second.rows >= 2  # at least the guest and the host
    guest = StatSample.objects.filter(kind="vm", object_key=running_tiny_guest.uuid).order_by("-ts").first()
    assert guest is not None and guest.resolution == 10
    assert guest.cpu_pct is not None and 0.0 <= guest.cpu_pct <= 100.0
    # A real guest reports its memory, its disks' and its NIC's counters.
    assert guest.mem_total_kib and guest.mem_used_kib and 0 < guest.mem_used_kib <= guest.mem_total_kib
    assert guest.disk_rd_bps is not None and guest.disk_rd_bps >= 0
    assert guest.net_rx_bps is not None and guest.net_rx_bps >= 0

    lab = StatSample.objects.filter(kind="host", object_key=str(host.pk)).order_by("-ts").first()
    assert lab is not None and lab.cpu_pct is not None
    assert lab.mem_total_kib and lab.mem_used_kib and lab.mem_used_kib < lab.mem_total_kib


def _cpu_total(stats: virt.HostStats) -> int:
    return sum(v or 0 for v in (stats.cpu_kernel_ns, stats.cpu_user_ns, stats.cpu_idle_ns, stats.cpu_iowait_ns))
