"""DHCP of a virtual network: the leases kept server side, and the network page's DHCP panel.

libvirt has no lease event, so beat's "network-leases" job (networks.refresh_leases_all in
stats/tasks.py, every LEASE_REFRESH_EVERY seconds, one task per host) reads the leases of each connected
host's active networks with DHCP (IPv4 or IPv6), writes the rows only when the set changed, and then pushes
``network.leases`` to whoever may see the network. Browsers never poll.
Static reservations are in networks.dhcp_reservations.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hosts.models import Host
from kvmweb import virt
from kvmweb.realtime import groups
from kvmweb.realtime.publish import publish
from kvmweb.virt import network_dhcp as virt_dhcp
from kvmweb.virt.network_dhcp import DhcpLease, IpDhcp
from networks.models import Network, NetworkLease

log = logging.getLogger(__name__)

LEASE_REFRESH_EVERY = 5.0

LeaseKey = tuple[str, str, int | None, str, str, datetime | None, str]


# Reading the DB rows


def network_dhcp(network: Network, family: str = "ipv4") -> IpDhcp | None:
    """The network's DHCP section of ``family`` as last observed (from the row's XML), or None."""
    if not network.xml:
        return None
    try:
        return virt_dhcp.ip_dhcp(network.xml, family)
    except virt.VirtError:
        return None


def network_leases(network: Network) -> list[NetworkLease]:
    return list(NetworkLease.objects.filter(network=network).order_by("type", "ip"))


def lease_payload(lease: NetworkLease) -> dict[str, Any]:
    return {
        "mac": lease.mac,
        "ip": lease.ip,
        "prefix": lease.prefix,
        "hostname": lease.hostname,
        "client_id": lease.client_id,
        "expires": lease.expires.isoformat() if lease.expires else None,
        "type": lease.type,
    }


def leases_updated(leases: Sequence[NetworkLease]) -> datetime | None:
    """When the lease list last changed (rows are rewritten together when it does)."""
    return max((lease.seen for lease in leases), default=None)


def leases_message(network: Network, leases: Iterable[NetworkLease]) -> dict[str, Any]:
    return {
        "type": "network.leases",
        "network": network.pk,
        "host": network.host_id,
        "leases": [lease_payload(lease) for lease in leases],
    }


def network_groups(network: Network) -> list[str]:
    """Who may see a network: administrators and the members of its host."""
    return [groups.ADMINS, groups.host_group(network.host_id)]


# The page


def panel_context(*, user: AbstractBaseUser | AnonymousUser, network: Network) -> dict[str, Any]:
    """What templates/networks/dhcp_panel.html needs, merged into the network page's context."""
    from networks.dhcp_reservations import reservation_may_manage

    config, config6 = network_dhcp(network), network_dhcp(network, "ipv6")
    leases = network_leases(network)
    return {
        "dhcp": config,
        "dhcp6": config6,
        "dhcp_leases": leases,
        "dhcp_leases_updated": leases_updated(leases),
        "dhcp_reservations": list(config.reservations) if config else [],
        "dhcp6_reservations": list(config6.reservations) if config6 else [],
        "dhcp_may_manage": reservation_may_manage(user, network),
        "dhcp_ip_example": ip_example(config) if config else "",
        "dhcp6_ip_example": ip_example(config6) if config6 else "",
    }


def ip_example(config: IpDhcp) -> str:
    """A free address to suggest for a reservation: in the subnet, before the DHCP range where there is room."""
    taken = {config.address, *(r.ip for r in config.reservations)}
    starts = [ipaddress.ip_address(r.start) for r in config.ranges if r.start]
    for count, address in enumerate(config.subnet.hosts()):
        if count > 1024:
            break
        if str(address) not in taken and (not starts or address < min(starts)):
            return str(address)
    return str(next(config.subnet.hosts(), ""))


# Refreshing from libvirt


def _to_read() -> Q:
    """Networks whose leases a refresh reads (active ones) or clears (stopped ones that still have rows)."""
    return Q(active=True, gone_since__isnull=True) | Q(leases__isnull=False)


def hosts_with_leases() -> list[int]:
    """Connected hosts with a network to read (whether it has DHCP is read from its XML) or to clear."""
    networks = Network.objects.filter(_to_read())
    hosts = Host.objects.filter(enabled=True, state=Host.State.CONNECTED, networks__in=networks)
    return list(hosts.distinct().values_list("pk", flat=True))


def lease_key(lease: DhcpLease | NetworkLease) -> LeaseKey:
    """What makes two readings of a lease the same (a renewal moves `expires`, so it is a change)."""
    return (lease.mac, lease.ip, lease.prefix, lease.hostname, lease.client_id, lease.expires, lease.type)


def leases_changed(rows: Iterable[NetworkLease], read: Iterable[DhcpLease]) -> bool:
    return sorted(map(lease_key, rows), key=repr) != sorted(map(lease_key, read), key=repr)


def network_apply_leases(*, network: Network, leases: Sequence[DhcpLease], now: datetime) -> bool:
    """Make the network's lease rows match a reading; publish `network.leases` on commit. False when unchanged."""
    leases = _unique(leases)
    with transaction.atomic():
        # Two refreshes of one host may overlap (a slow host, several workers): one at a time per network.
        Network.objects.select_for_update().filter(pk=network.pk).values_list("pk").first()
        if not leases_changed(network_leases(network), leases):
            return False
        NetworkLease.objects.filter(network=network).delete()
        fresh = NetworkLease.objects.bulk_create(
            NetworkLease(
                network=network,
                mac=lease.mac,
                ip=lease.ip,
                prefix=lease.prefix,
                hostname=lease.hostname[:255],
                client_id=lease.client_id[:255],
                expires=lease.expires,
                type=lease.type,
                seen=now,
            )
            for lease in leases
        )
        publish(network_groups(network), leases_message(network, sorted(fresh, key=_row_order)))
    return True


def _unique(leases: Sequence[DhcpLease]) -> list[DhcpLease]:
    """One lease per (MAC, IP): dnsmasq may briefly list a renewal twice; the later expiry stands."""
    chosen: dict[tuple[str, str], DhcpLease] = {}
    for lease in leases:
        key = (lease.mac, lease.ip)
        if key not in chosen or _expiry_order(lease) > _expiry_order(chosen[key]):
            chosen[key] = lease
    return list(chosen.values())


def _expiry_order(lease: DhcpLease) -> float:
    return float("inf") if lease.expires is None else lease.expires.timestamp()


def _row_order(row: NetworkLease) -> tuple[str, str]:
    return (row.type, row.ip)


def networks_refresh_leases(*, host_id: int) -> int:
    """Read the leases of the host's active networks with DHCP; returns how many networks changed.

    A network that stopped (or lost its DHCP) has its rows cleared, so the page empties too.
    """
    host = Host.objects.filter(pk=host_id, enabled=True, state=Host.State.CONNECTED).first()
    if host is None:
        return 0
    target, now, changed = host.virt_target(), timezone.now(), 0
    for network in Network.objects.filter(_to_read(), host=host).distinct():
        has_dhcp = network_dhcp(network) is not None or network_dhcp(network, "ipv6") is not None
        serving = network.active and network.gone_since is None and has_dhcp
        if not serving:
            if NetworkLease.objects.filter(network=network).exists():
                changed += network_apply_leases(network=network, leases=(), now=now)
            continue
        try:
            leases = virt_dhcp.get_dhcp_leases(target, str(network.uuid))
        except virt.NotFound:
            continue  # the events watcher marks it gone
        except virt.VirtError as exc:
            # Quietly: the watcher and the reconcile report an unreachable host.
            log.info("leases: could not read %s on %s: %s", network.name, host.name, exc)
            continue
        changed += network_apply_leases(network=network, leases=leases, now=now)
    return changed
