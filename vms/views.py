from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from kvmweb import access
from kvmweb.actors import actor_from_request
from kvmweb.errors import Invalid
from kvmweb.operations.models import Operation
from kvmweb.ui import operation_queued, refusals_as_pages, safe_redirect
from vms import actions, selectors
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
        "bulk_actions": actions.bulk_actions(),
        "can_act": access.can_act(request.user),
    }
    return render(request, "vms/list.html", context)


@login_required
@refusals_as_pages
def vm_detail(request: HttpRequest, vm_uuid: UUID) -> HttpResponse:
    vm = selectors.vm_get(request.user, vm_uuid)
    operations = Operation.objects.filter(target_type="vm", target_id=str(vm.uuid)).select_related("requested_by")
    can_act = access.can_act(request.user, vm)
    context = {
        "vm": vm,
        "operations": list(operations[:20]),
        "can_manage": access.is_admin(request.user),
        "actions": actions.allowed_actions(vm) if can_act else [],
        "can_act": can_act,
    }
    return render(request, "vms/detail.html", context)


@login_required
@require_POST
@refusals_as_pages
def vm_action(request: HttpRequest, vm_uuid: UUID, action: str) -> HttpResponse:
    actor = actor_from_request(request)
    vm = actions.vm_for_action(actor=actor, uuid=vm_uuid)
    op = actions.vm_action(actor=actor, vm=vm, action=action, params=_params(request))
    operation_queued(request, op)
    return safe_redirect(request, fallback=reverse("vms:detail", args=[vm.uuid]))


@login_required
@require_POST
@refusals_as_pages
def vm_bulk_action(request: HttpRequest, action: str) -> HttpResponse:
    actor = actor_from_request(request)
    spec = actions.action_spec(action)
    uuids = []
    for value in request.POST.getlist("vms"):
        try:
            uuids.append(UUID(value))
        except ValueError:
            raise Invalid(f"{value!r} is not a VM UUID.") from None
    if not uuids:
        raise Invalid(f"Select the VMs to {spec.verb} first.")
    found, missing = selectors.vms_get_many(request.user, uuids)
    result = actions.vm_bulk_action(actor=actor, vms=found, action=action, params=_params(request))
    refused = [message for _vm, message in result.refused]
    refused += [f"{uuid}: No such VM." for uuid in missing]
    summary = f"{spec.label}: {len(result.operations)} queued"
    if refused:
        messages.warning(request, f"{summary}; {len(refused)} refused: " + " ".join(refused))
    else:
        messages.info(request, f"{summary}.")
    return safe_redirect(request, fallback=reverse("vms:list"))


def _params(request: HttpRequest) -> dict[str, str]:
    return {key: request.POST[key] for key in ("mode", "timeout") if request.POST.get(key)}
