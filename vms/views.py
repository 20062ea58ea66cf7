from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from consoles import shares
from kvmweb import access
from kvmweb.actors import actor_from_request
from kvmweb.errors import Invalid
from kvmweb.operations.models import Operation
from kvmweb.ui import operation_queued, refusals_as_pages, safe_redirect
from vms import actions, catalog, selectors
from vms.create import vm_create
from vms.edit.selectors import vm_hardware
from vms.models import VirtualMachine
from vms.snapshots import snapshot_support
from vms.wizard import wizard_choices, wizard_data, wizard_rows

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
        "shared": shares.shared_with(request.user),
    }
    return render(request, "vms/list.html", context)


WIZARD_STEPS = [
    ("basics", "Basics"),
    ("source", "Boot source"),
    ("storage", "Storage"),
    ("devices", "Devices"),
    ("review", "Review"),
]
WIZARD_SOURCES = [
    ("iso", "disc", "Install from an ISO", "A CD-ROM with an installer, and a blank disk."),
    ("template", "template", "A template", "Copy or link the disks of a template VM."),
    ("cloud", "cloud", "A cloud image", "A ready-made disk image, set up by cloud-init."),
    ("network", "network", "The network (PXE)", "Boot from a PXE server, with a blank disk."),
]


@login_required
@refusals_as_pages
def vm_new(request: HttpRequest) -> HttpResponse:
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            op = vm_create(actor=actor_from_request(request), data=wizard_data(request.POST))
        except Invalid as exc:
            errors = {key.replace(".", "_"): str(message) for key, message in exc.details.items()}
            errors = errors or {"form": exc.message}
        else:
            operation_queued(request, op)
            return redirect("operations:detail", op.pk)
    sources = [*WIZARD_SOURCES]
    if access.is_admin(request.user):
        sources.append(("kernel", "terminal-2", "A kernel on the host", "Direct kernel boot, for administrators."))
    context = {
        "choices": wizard_choices(request.user),
        "form": request.POST if request.method == "POST" else _wizard_defaults(request),
        "rows": wizard_rows(request.POST if request.method == "POST" else None, errors),
        "errors": errors,
        "error_list": list(dict.fromkeys(errors.values())),
        "steps": WIZARD_STEPS,
        "sources": sources,
    }
    return render(request, "vms/create.html", context, status=400 if errors else 200)


def _wizard_defaults(request: HttpRequest) -> dict[str, str]:
    """A fresh wizard; "New VM from it" on the templates page preselects that template."""
    wanted = _uuid_or_none(request.GET.get("template"))
    chosen = catalog.visible_templates(request.user).filter(uuid=wanted).first() if wanted else None
    if chosen is not None:
        return {"source_type": "template", "template": str(chosen.uuid), "host": str(chosen.host_id)}
    return {"source_type": "iso"}


def _uuid_or_none(value: str | None) -> UUID | None:
    try:
        return UUID(value or "")
    except ValueError:
        return None


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
        "shutdown_timeout": settings.KVMWEB_SHUTDOWN_TIMEOUT,
        "hw": vm_hardware(vm),
        "panel": shares.share_panel(request.user, vm),
        "snapshots": list(vm.snapshots.all()),
        "snapshot_support": snapshot_support(vm),
        "manage": {spec.name: spec for spec in actions.allowed_actions(vm, "manage")} if can_act else {},
        "can_act": can_act,
        "users": catalog.assignable_users() if access.is_admin(request.user) else [],
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


_NOT_PARAMS = {"csrfmiddlewaretoken", "next", "vms"}


def _params(request: HttpRequest) -> dict[str, str]:
    return {key: request.POST[key] for key in request.POST if key not in _NOT_PARAMS and request.POST.get(key)}


@login_required
def template_list(request: HttpRequest) -> HttpResponse:
    templates = catalog.visible_templates(request.user).order_by("name")
    return render(request, "vms/templates.html", {"templates": list(templates)})


@login_required
@require_POST
@refusals_as_pages
def vm_template(request: HttpRequest, vm_uuid: UUID) -> HttpResponse:
    actor = actor_from_request(request)
    vm = actions.vm_for_action(actor=actor, uuid=vm_uuid)
    template = request.POST.get("template") == "on"
    catalog.vm_set_template(actor=actor, vm=vm, template=template)
    messages.success(request, f"{vm.name} is {'now a template' if template else 'no longer a template'}.")
    return safe_redirect(request, fallback=reverse("vms:detail", args=[vm.uuid]))


@login_required
@require_POST
@refusals_as_pages
def vm_reassign(request: HttpRequest, vm_uuid: UUID) -> HttpResponse:
    actor = actor_from_request(request)
    vm = selectors.vm_get(request.user, vm_uuid)
    access.authorize(actor, "vm.reassign", vm, target=vm.as_target())
    owner = catalog.owner_named(request.POST.get("owner", ""))
    catalog.vm_reassign(actor=actor, vm=vm, owner=owner)
    messages.success(request, f"{vm.name} now belongs to {owner.get_username() if owner else 'nobody'}.")
    return safe_redirect(request, fallback=reverse("vms:detail", args=[vm.uuid]))
