"""Writes for VMs. The inventory half: make the rows match what a host's libvirt reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q

from hosts.models import Host
from kvmweb import virt
from vms.models import VirtualMachine

# The columns an observation may change; `version` and timestamps follow from them.
OBSERVED = (
    "host_id", "name", "state", "state_reason", "vcpus", "memory_kib", "max_memory_kib", "autostart",
    "persistent", "has_managed_save", "domain_type", "os_type", "arch", "title", "description",
    "security_model", "security_label", "xml", "xml_inactive",
)  # fmt: skip
ACTIVE_STATES = {"running", "paused", "blocked", "shutdown", "pmsuspended"}


@dataclass
class InventoryChanges:
    created: list[VirtualMachine] = field(default_factory=list)
    updated: list[VirtualMachine] = field(default_factory=list)
    gone: list[VirtualMachine] = field(default_factory=list)

    @property
    def changed(self) -> list[VirtualMachine]:
        return [*self.created, *self.updated, *self.gone]


def observed_fields(host: Host, record: virt.DomainRecord) -> dict[str, Any]:
    return {
        "host_id": host.pk,
        "name": record.name,
        "state": record.state if record.state in VirtualMachine.State.values else VirtualMachine.State.NOSTATE,
        "state_reason": record.reason or "",
        "vcpus": record.vcpus or 0,
        "memory_kib": record.memory_kib or 0,
        "max_memory_kib": record.max_memory_kib or 0,
        "autostart": record.autostart,
        "persistent": record.persistent,
        "has_managed_save": record.has_managed_save,
        "domain_type": record.domain_type or "",
        "os_type": record.os_type or "",
        "arch": record.arch or "",
        "title": record.title or "",
        "description": record.description or "",
        "security_model": record.security_model or "",
        "security_label": record.security_label or "",
        "xml": record.xml or "",
        "xml_inactive": record.xml_inactive,
    }


def vm_observe(vm: VirtualMachine, values: dict[str, Any], now: datetime) -> list[str]:
    """Apply an observation to a row in memory; the columns it changed (none: nothing changed)."""
    changed = [name for name in OBSERVED if getattr(vm, name) != values[name]]
    if not changed and vm.gone_since is None:
        return []
    if "state" in changed or vm.gone_since is not None:
        vm.state_changed = now
    for name in changed:
        setattr(vm, name, values[name])
    if "state" in changed and vm.state == VirtualMachine.State.SHUTOFF:
        vm.pending = {}  # a stopped guest's next boot reads the persistent definition: nothing is pending
    vm.gone_since = None
    vm.version += 1
    return [*changed, "pending", "version", "state_changed", "gone_since", "updated"]


def _may_claim(vm: VirtualMachine, record: virt.DomainRecord) -> bool:
    """Whether a UUID known on another host now belongs to this one (a migration, or a move).

    Both hosts can list the same UUID after a migration (the source keeps a shut-off
    definition); the row follows the host where the guest is alive.
    """
    return vm.state == VirtualMachine.State.GONE or (record.state in ACTIVE_STATES and vm.state not in ACTIVE_STATES)


def vms_apply_inventory(*, host: Host, domains: Sequence[virt.DomainRecord], now: datetime) -> InventoryChanges:
    """Make this host's VM rows match its domain list, in a bounded number of queries.

    New guests appear unowned; guests no longer listed are marked gone (never deleted),
    keeping their owner and history.
    """
    uuids = [record.uuid for record in domains]
    rows = {str(vm.uuid): vm for vm in VirtualMachine.objects.filter(Q(host=host) | Q(uuid__in=uuids))}
    changes = InventoryChanges()
    for record in domains:
        values = observed_fields(host, record)
        vm = rows.get(record.uuid)
        if vm is None:
            changes.created.append(VirtualMachine(uuid=record.uuid, state_changed=now, **values))
        elif (vm.host_id == host.pk or _may_claim(vm, record)) and vm_observe(vm, values, now):
            changes.updated.append(vm)
    listed = set(uuids)
    for uuid, vm in rows.items():
        if vm.host_id == host.pk and uuid not in listed and vm.state != VirtualMachine.State.GONE:
            vm.state, vm.state_reason, vm.gone_since, vm.state_changed = VirtualMachine.State.GONE, "", now, now
            vm.version += 1
            changes.gone.append(vm)
    # The worker's reconcile of a newly added host and the events process's, on connecting to it, can
    # index one new guest at once: an upsert (in one order, so their row locks can't deadlock) lets both win.
    changes.created.sort(key=lambda vm: str(vm.uuid))
    VirtualMachine.objects.bulk_create(
        changes.created, batch_size=500, update_conflicts=True, unique_fields=["uuid"], update_fields=list(OBSERVED)
    )
    fields = [*OBSERVED, "pending", "version", "state_changed", "gone_since", "updated"]
    for vm in (*changes.updated, *changes.gone):
        vm.updated = now
    VirtualMachine.objects.bulk_update([*changes.updated, *changes.gone], fields, batch_size=500)
    return changes


def vm_apply_record(
    *,
    host: Host,
    uuid: str,
    record: virt.DomainRecord | None,
    now: datetime,
    row: VirtualMachine | None = None,
    hold: bool = False,
) -> VirtualMachine | None:
    """One VM's row from one fresh observation, for an event; None when nothing changed.

    `record` None means the host no longer has the domain: the row is marked gone, never deleted.
    A worker passes the `row` it read moments before, and it is updated in place: the observation,
    newer than the row, wins either way, and the row need not be read again. With `hold`, a change
    that only updates the row is left unwritten, its columns in `row.held_fields` (None is returned).
    """
    vm = row if row is not None else VirtualMachine.objects.filter(uuid=uuid).first()
    if record is None:
        if vm is None or vm.host_id != host.pk or vm.state == VirtualMachine.State.GONE:
            return None
        vm.state, vm.state_reason, vm.gone_since, vm.state_changed = VirtualMachine.State.GONE, "", now, now
        vm.version += 1
        vm.save(update_fields=["state", "state_reason", "gone_since", "state_changed", "version", "updated"])
        return vm
    values = observed_fields(host, record)
    if vm is None:
        # The events watcher and the worker that made the VM may both insert it: the second takes the first's row.
        vm, created = VirtualMachine.objects.get_or_create(uuid=uuid, defaults={"state_changed": now, **values})
        if created:
            return vm
    if vm.host_id != host.pk and not _may_claim(vm, record):
        return None
    changed = vm_observe(vm, values, now)
    if not changed:
        return None
    if hold:
        vm.held_fields = tuple(changed)
        return None
    # Only what changed is written: a domain's XML, kept twice, would otherwise be rewritten on every event.
    vm.save(update_fields=changed)
    return vm
