"""Writes for networks. The inventory half: make the rows match what a host reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from hosts.models import Host
from kvmweb import virt
from kvmweb.observed import observe, observed_row
from networks.models import Network

OBSERVED = ("name", "active", "autostart", "persistent", "bridge", "forward_mode", "xml", "xml_inactive")


def _values(record: virt.NetworkRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "active": record.active,
        "autostart": record.autostart,
        "persistent": record.persistent,
        "bridge": record.bridge or "",
        "forward_mode": record.forward_mode or "",
        "xml": record.xml or "",
        "xml_inactive": record.xml_inactive or "",
    }


def networks_apply_inventory(*, host: Host, networks: Sequence[virt.NetworkRecord], now: datetime) -> int:
    """Upsert the host's networks and mark the missing ones gone; returns how many rows changed."""
    rows = {str(n.uuid): n for n in Network.objects.filter(host=host)}
    create, update = [], []
    for record in networks:
        values = _values(record)
        row = rows.pop(record.uuid, None)
        if row is None:
            create.append(Network(host=host, uuid=record.uuid, **values))
        elif observe(row, values):
            update.append(row)
    for row in rows.values():
        if row.gone_since is None:
            row.gone_since, row.active = now, False
            update.append(row)
    # The worker and the events process may index a newly added host at once: an upsert lets both win.
    create.sort(key=lambda row: str(row.uuid))
    Network.objects.bulk_create(
        create, update_conflicts=True, unique_fields=["host", "uuid"], update_fields=list(OBSERVED)
    )
    Network.objects.bulk_update(update, [*OBSERVED, "gone_since"])
    return len(create) + len(update)


def network_apply_record(*, host: Host, uuid: str, record: virt.NetworkRecord | None, now: datetime) -> Network | None:
    """One network's row from one fresh observation, for an event; None when nothing changed.

    `record` None means the host no longer has the network: the row is marked gone, never deleted.
    """
    if record is None:
        row = Network.objects.filter(host=host, uuid=uuid).first()
        if row is None or row.gone_since is not None:
            return None
        row.gone_since, row.active = now, False
        row.save(update_fields=["gone_since", "active", "updated"])
        return row
    return observed_row(Network, {"host": host, "uuid": uuid}, _values(record), OBSERVED)
