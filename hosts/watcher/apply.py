"""The watcher's database work. Plain sync functions, run in the database threads, never on the loop.

Each returns the messages to push (``Outgoing``) instead of pushing them: the watcher awaits
``apublish`` on its own loop once the write has committed (these run in autocommit, so it has).
Host-level changes (reconcile, connected, unreachable) go through the hosts services, which push
through ``publish`` on commit themselves.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from hosts.inventory import host_reconcile
from hosts.models import Host
from hosts.services import host_apply_info, host_mark_unreachable
from kvmweb import virt
from kvmweb.realtime import groups
from networks.models import Network
from networks.services import network_apply_record
from storage.messages import pool_groups, pool_payload
from storage.models import StoragePool
from storage.services import pool_apply_record, pool_apply_volumes
from vms.messages import vm_groups, vm_payload
from vms.services import vm_apply_record
from vms.snapshots import snapshots_sync

PoolFetch = tuple[virt.PoolRecord, tuple[virt.VolumeRecord, ...]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    groups: list[str]
    message: dict[str, Any]


def host_row(host_id: int) -> Host | None:
    return Host.objects.filter(pk=host_id, enabled=True).first()


def domain_apply(host: Host, uuid: str, record: virt.DomainRecord | None) -> Outgoing | None:
    """A domain event's fresh record (None: the domain is gone) onto its row; the message, if it changed."""
    vm = vm_apply_record(host=host, uuid=uuid, record=record, now=timezone.now())
    if vm is None:
        return None
    if record is not None:
        # A changed domain may have been snapshotted or reverted (libvirt has no snapshot event; a revert
        # comes as "... from_snapshot"): compare its snapshot names, and re-read them only if they differ.
        with contextlib.suppress(virt.VirtError):
            snapshots_sync(host, [vm])
    return Outgoing(vm_groups(vm), vm_payload(vm))


def network_apply(host: Host, uuid: str, record: virt.NetworkRecord | None) -> Outgoing | None:
    network = network_apply_record(host=host, uuid=uuid, record=record, now=timezone.now())
    if network is None:
        return None
    return Outgoing([groups.ADMINS, groups.host_group(host.pk)], network_payload(network))


def pool_apply(host: Host, uuid: str, fetched: PoolFetch | None) -> Outgoing | None:
    """A pool event's fresh record and volume listing (None: the pool is gone) onto the rows."""
    record, volumes = fetched if fetched is not None else (None, ())
    pool = pool_apply_record(host=host, uuid=uuid, record=record, now=timezone.now())
    if pool_apply_volumes(host=host, uuid=uuid, volumes=volumes) and pool is None:
        pool = StoragePool.objects.filter(host=host, uuid=uuid).first()
    if pool is None:
        return None
    return Outgoing(pool_groups(pool), pool_payload(pool))


def network_payload(network: Network) -> dict[str, Any]:
    return {
        "type": "network.state",
        "network": {
            "id": network.pk,
            "host": network.host_id,
            "uuid": str(network.uuid),
            "name": network.name,
            "active": network.active,
            "autostart": network.autostart,
            "persistent": network.persistent,
            "gone": network.gone_since is not None,
        },
    }


def host_connected(
    host_id: int, inventory: virt.HostInventory, info: virt.HostInfo, ksm: virt.KsmInfo | None = None
) -> tuple[Host, dict[str, Any]] | None:
    """After a (re)connect: the full reconcile, then the host is marked connected. None if the host is gone."""
    host = host_row(host_id)
    if host is None:
        return None
    summary = host_reconcile(host=host, inventory=inventory)
    host_apply_info(host=host, info=info, ksm=ksm)
    return host, summary


def host_lost(host_id: int, reason: str) -> None:
    """The connection failed or dropped: the host is unreachable (unless it was disabled or removed meanwhile)."""
    host = host_row(host_id)
    if host is not None and (host.state != Host.State.UNREACHABLE or host.last_error != reason):
        host_mark_unreachable(host=host, reason=reason)
