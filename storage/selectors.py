from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, QuerySet

from kvmweb import access
from kvmweb.errors import NotVisible
from storage.models import StoragePool, Volume
from vms.actions import ActionSpec, action_refusal, action_spec
from vms.models import VirtualMachine


def pool_list(user: AbstractBaseUser | AnonymousUser, *, host_id: int | None = None) -> QuerySet[StoragePool]:
    pools = access.visible_pools(user).select_related("host").defer("xml").annotate(volume_count=Count("volumes"))
    if host_id is not None:
        pools = pools.filter(host_id=host_id)
    return pools.order_by("host__name", "name")


def pool_get(user: AbstractBaseUser | AnonymousUser, pool_id: int) -> StoragePool:
    pool = access.visible_pools(user).select_related("host").filter(pk=pool_id).first()
    if pool is None:
        raise NotVisible("No such storage pool.")
    return pool


def pool_volumes(pool: StoragePool) -> QuerySet[Volume]:
    return pool.volumes.order_by("name")


@dataclass(frozen=True, slots=True)
class SavedState:
    """A VM holding a managed-save image: its memory, saved to disk on its host, resumed at its next start."""

    vm: VirtualMachine
    saved_at: datetime | None  # when it was saved, if the row says: shut off as "saved" since then
    discard: ActionSpec | None  # "Discard saved state", worded for the VM, when the user may take it now
    refusal: str  # why the user cannot discard it now ("" when they can, or when it is not theirs to discard)


def saved_states(user: AbstractBaseUser | AnonymousUser, *, host_id: int | None = None) -> list[SavedState]:
    """The VMs `user` sees that hold a saved state, by host and name, read from the rows only."""
    vms = access.visible_vms(user).filter(has_managed_save=True).exclude(state=VirtualMachine.State.GONE)
    if host_id is not None:
        vms = vms.filter(host_id=host_id)
    spec = action_spec("discard-save")
    found = []
    for vm in vms.select_related("host").defer("xml").order_by("host__name", "name"):
        saved = vm.state == VirtualMachine.State.SHUTOFF and vm.state_reason == "saved"
        may_act = access.can_act(user, vm)
        refusal = (action_refusal(vm, spec) or "") if may_act else ""
        discard = spec.for_vm(vm) if may_act and not refusal else None
        found.append(SavedState(vm, vm.state_changed if saved else None, discard, refusal))
    return found
