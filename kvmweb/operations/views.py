from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from kvmweb.errors import NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import kind_choices
from kvmweb.operations.selectors import operations_for
from kvmweb.ui import refusals_as_pages


@login_required
def operation_list(request: HttpRequest) -> HttpResponse:
    ops = operations_for(request.user)
    status, kind = request.GET.get("status", ""), request.GET.get("kind", "")
    if status in Operation.Status.values:
        ops = ops.filter(status=status)
    if kind:
        ops = ops.filter(kind=kind)
    page = Paginator(ops, 50).get_page(request.GET.get("page"))
    context = {
        "page_obj": page,
        "status_filter": status,
        "kind_filter": kind,
        "kinds": kind_choices(),
        "statuses": Operation.Status.choices,
    }
    return render(request, "operations/list.html", context)


@login_required
@refusals_as_pages
def operation_detail(request: HttpRequest, op_id: int) -> HttpResponse:
    op = operations_for(request.user).filter(pk=op_id).first()
    if op is None:
        raise NotVisible("No such operation.")
    return render(request, "operations/detail.html", {"operation": op})
