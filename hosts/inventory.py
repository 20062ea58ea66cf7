"""A full reconcile of one host: the database is made to match what its libvirt reports now."""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from hosts.models import Host
from kvmweb import virt
from networks.services import networks_apply_inventory
from storage.services import storage_apply_inventory
from vms.messages import vms_publish
from vms.services import vms_apply_inventory
from vms.snapshots import snapshots_sync


def host_reconcile(*, host: Host, inventory: virt.HostInventory) -> dict[str, Any]:
    began = time.monotonic()
    now = timezone.now()
    with transaction.atomic():
        changes = vms_apply_inventory(host=host, domains=inventory.domains, now=now)
        networks = networks_apply_inventory(host=host, networks=inventory.networks, now=now)
        storage = storage_apply_inventory(host=host, pools=inventory.pools, volumes=inventory.volumes, now=now)
        vms_publish(changes.changed, host_id=host.pk)
    return {
        "vms": len(inventory.domains),
        "vms_new": len(changes.created),
        "vms_changed": len(changes.updated),
        "vms_gone": len(changes.gone),
        "network_rows_changed": networks,
        "storage_rows_changed": storage,
        "seconds": round(time.monotonic() - began, 3),
    }


def host_snapshots_sync(*, host: Host) -> int:
    """After a reconcile: re-read the snapshot lists that changed outside kvmweb (virsh, another tool).

    Returns how many VMs' lists were re-read. A failure leaves the rows as they were for the next refresh.
    """
    try:
        return len(snapshots_sync(host))
    except virt.VirtError:
        return 0
