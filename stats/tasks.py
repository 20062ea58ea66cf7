"""Beat's periodic stats jobs. Each receives ids, and calls a service."""

from celery import shared_task

from stats.objects import SAMPLE_EVERY
from stats.services.rollup import stats_downsample, stats_prune
from stats.services.sampler import hosts_to_sample, stats_sample_host


@shared_task(name="stats.sample_all")
def sample_all() -> int:
    """Queue one sampling round per connected host; returns how many were queued."""
    host_ids = hosts_to_sample()
    for host_id in host_ids:
        # A round still queued when the next is due is worthless: drop it rather than pile up.
        sample_host.apply_async(args=[host_id], expires=SAMPLE_EVERY)
    return len(host_ids)


@shared_task(name="stats.sample_host", ignore_result=True)
def sample_host(host_id: int) -> int:
    """One host's round; returns the rows written (0 when the host was skipped)."""
    done = stats_sample_host(host_id=host_id)
    return done.rows if done else 0


@shared_task(name="networks.refresh_leases_all")
def refresh_leases_all() -> int:
    """Queue a DHCP lease read per connected host with an active network (libvirt has no lease event)."""
    from networks.dhcp import LEASE_REFRESH_EVERY, hosts_with_leases

    host_ids = hosts_with_leases()
    for host_id in host_ids:
        refresh_leases_host.apply_async(args=[host_id], expires=LEASE_REFRESH_EVERY)
    return len(host_ids)


@shared_task(name="networks.refresh_leases_host", ignore_result=True)
def refresh_leases_host(host_id: int) -> int:
    """One host's lease read; returns how many of its networks' lease lists changed (and were pushed)."""
    from networks.dhcp import networks_refresh_leases

    return networks_refresh_leases(host_id=host_id)


@shared_task(name="stats.downsample")
def downsample(resolution: int) -> int:
    return stats_downsample(resolution=resolution)


@shared_task(name="stats.prune")
def prune() -> int:
    return stats_prune()
