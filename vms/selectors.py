"""Reads for VMs. Pages render from here only: never from libvirt, and in a bounded number of queries."""

from dataclasses import dataclass
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet

from kvmweb import access
from kvmweb.errors import NotVisible
from vms.models import VirtualMachine

SORTS = {
    "name": ("name", "id"),
    "state": ("state", "name"),
    "host": ("host__name", "name"),
    "owner": ("owner__username", "name"),
    "vcpus": ("vcpus", "name"),
    "memory": ("memory_kib", "name"),
    "changed": ("state_changed", "name"),
}
# The big text columns stay in the database for list pages.
LIST_DEFERRED = ("xml", "xml_inactive", "description")


@dataclass(frozen=True)
class VmFilters:
    search: str = ""
    host: int | None = None
    state: str = ""
    owner: str = ""  # a username, "none" for unowned
    sort: str = "name"
    descending: bool = False


def parse_filters(params: dict[str, str]) -> VmFilters:
    sort = params.get("sort", "name")
    descending = sort.startswith("-")
    sort = sort.lstrip("-")
    host = params.get("host", "")
    return VmFilters(
        search=params.get("search", params.get("q", "")).strip()[:100],
        host=int(host) if host.isdigit() else None,
        state=params.get("state", "") if params.get("state", "") in VirtualMachine.State.values else "",
        owner=params.get("owner", "").strip()[:150],
        sort=sort if sort in SORTS else "name",
        descending=descending,
    )


def vm_list(user: AbstractBaseUser | AnonymousUser, filters: VmFilters) -> QuerySet[VirtualMachine]:
    vms = access.visible_vms(user).select_related("host", "owner").defer(*LIST_DEFERRED)
    vms = vms.filter(state=filters.state) if filters.state else vms.exclude(state=VirtualMachine.State.GONE)
    if filters.host is not None:
        vms = vms.filter(host_id=filters.host)
    if filters.owner == "none":
        vms = vms.filter(owner__isnull=True)
    elif filters.owner:
        vms = vms.filter(owner__username=filters.owner)
    if filters.search:
        vms = vms.filter(_search(filters.search))
    order = SORTS[filters.sort]
    return vms.order_by(*(f"-{field}" if filters.descending else field for field in order))


def _search(term: str) -> Q:
    match = Q(name__icontains=term) | Q(host__name__icontains=term) | Q(owner__username__icontains=term)
    try:
        return match | Q(uuid=UUID(term))
    except ValueError:
        return match


def vm_get(user: AbstractBaseUser | AnonymousUser, uuid: UUID | str) -> VirtualMachine:
    vm = access.visible_vms(user).select_related("host", "owner").filter(uuid=uuid).first()
    if vm is None:
        raise NotVisible("No such VM.")
    return vm


def vm_state_counts(user: AbstractBaseUser | AnonymousUser) -> dict[str, int]:
    rows = access.visible_vms(user).values("state").annotate(n=Count("id"))
    counts = {state: 0 for state in VirtualMachine.State.values}
    for row in rows:
        counts[row["state"]] = row["n"]
    return counts


BULK_UNREAD = ("xml", "xml_inactive", "host__capabilities", "host__interfaces")


def vms_get_many(user: AbstractBaseUser | AnonymousUser, uuids: list[UUID]) -> tuple[list[VirtualMachine], list[UUID]]:
    """The VMs among `uuids` that `user` may see, in the order asked, and the other UUIDs (unknown or hidden).

    For bulk actions, which never read a domain's XML or its host's facts: the two XML copies are the bulk of
    a row, and the host's facts would be decoded again for every VM on it, so they are left unread.
    """
    rows = access.visible_vms(user).select_related("host", "owner").defer(*BULK_UNREAD).order_by()
    found = {vm.uuid: vm for vm in rows.filter(uuid__in=uuids)}
    ordered = list(dict.fromkeys(uuids))
    return [found[uuid] for uuid in ordered if uuid in found], [uuid for uuid in ordered if uuid not in found]
