from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from kvmweb import access
from kvmweb.operations.models import Operation
from kvmweb.ui import refusals_as_pages
from vms import selectors
from vms.models import VirtualMachine

PAGE_SIZE = 50


@login_required
def vm_list(request: HttpRequest) -> HttpResponse:
    filters = selectors.parse_filters(request.GET.dict())
    page = Paginator(selectors.vm_list(request.user, filters), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page_obj": page,
        "filters": filters,
        "sort_key": ("-" if filters.descending else "") + filters.sort,
        "hosts": list(access.visible_hosts(request.user).only("id", "name")),
        "states": [c for c in VirtualMachine.State.choices],
        "is_filtered": bool(filters.search or filters.host or filters.state or filters.owner),
    }
    return render(request, "vms/list.html", context)


@login_required
@refusals_as_pages
def vm_detail(request: HttpRequest, vm_uuid: UUID) -> HttpResponse:
    vm = selectors.vm_get(request.user, vm_uuid)
    operations = Operation.objects.filter(target_type="vm", target_id=str(vm.uuid)).select_related("requested_by")
    context = {"vm": vm, "operations": list(operations[:20]), "can_manage": access.is_admin(request.user)}
    return render(request, "vms/detail.html", context)
