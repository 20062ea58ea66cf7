"""Network pages: the list, a network's page, the "Define network" form, the action buttons and the XML editor.

No page calls libvirt while rendering: they read the rows the events process and refreshes keep
(the XML editor's script fetches the definition from the API, like the VM's).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from hosts import selectors as host_selectors
from kvmweb import access
from kvmweb.actors import actor_from_request
from kvmweb.api.errors import error_body
from kvmweb.errors import Conflict, Invalid
from kvmweb.ui import operation_queued, refusals_as_pages, safe_redirect
from networks import actions, dhcp, selectors
from networks.forms import NetworkDefineForm
from networks.interfaces import host_interfaces
from networks.models import Network
from vms.xml_editor import xml_diff


@login_required
def network_list(request: HttpRequest) -> HttpResponse:
    host = request.GET.get("host", "")
    networks = selectors.annotate_modes(
        list(selectors.network_list(request.user, host_id=int(host) if host.isdigit() else None))
    )
    may_manage = access.is_admin(request.user)
    for network in networks:
        network.actions = actions.allowed_network_actions(network) if may_manage else {}  # type: ignore[attr-defined]
    hosts = list(access.visible_hosts(request.user).only("id", "name"))
    context = {"networks": networks, "hosts": hosts, "host_filter": host, "may_manage": may_manage}
    return render(request, "networks/list.html", context)


@login_required
@refusals_as_pages
def network_detail(request: HttpRequest, network_id: int) -> HttpResponse:
    network = selectors.network_get(request.user, network_id)
    selectors.annotate_modes([network])
    may_manage = access.is_admin(request.user)
    vms = [(vm, nics) for vm, nics in actions.network_vms(network) if access.can_see(request.user, vm)]
    context: dict[str, Any] = {
        "network": network,
        "info": selectors.network_details(network),
        "mode_sentence": network.mode_sentence,  # type: ignore[attr-defined]
        "vms": vms,
        "users": actions.network_users(network),
        "actions": actions.allowed_network_actions(network) if may_manage else {},
        "may_manage": may_manage,
        **dhcp.panel_context(user=request.user, network=network),
    }
    return render(request, "networks/detail.html", context)


@login_required
@refusals_as_pages
def network_new(request: HttpRequest) -> HttpResponse:
    actor = actor_from_request(request)
    access.require(request.user, "network.manage")
    visible = list(access.visible_hosts(request.user).order_by("name"))
    host_param = request.GET.get("host", "")
    initial = {"host": int(host_param)} if host_param.isdigit() else {}
    form = NetworkDefineForm(request.POST or None, hosts=[(h.pk, h.name) for h in visible], initial=initial)
    if request.method == "POST" and form.is_valid():
        host = host_selectors.host_get(request.user, form.cleaned_data["host"])
        try:
            op = actions.network_define(actor=actor, host=host, data=form.to_data())
        except (Invalid, Conflict) as exc:
            form.add_refusal(exc.details, exc.message)
        else:
            operation_queued(request, op)
            return redirect(f"{reverse('networks:list')}?host={host.pk}")
    chosen = form["host"].value() or (visible[0].pk if visible else None)
    chosen_host = next((h for h in visible if str(h.pk) == str(chosen)), None)
    context = {
        "form": form,
        "interfaces": host_interfaces(chosen_host) if chosen_host else None,
        "chosen_host": chosen_host,
    }
    return render(request, "networks/form.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
@refusals_as_pages
def network_action(request: HttpRequest, network_id: int, action: str) -> HttpResponse:
    network = selectors.network_get(request.user, network_id)
    params = {"xml": request.POST.get("xml", "")} if action == "define-xml" else {}
    op = actions.network_action(actor=actor_from_request(request), network=network, action=action, params=params)
    operation_queued(request, op)
    fallback = reverse("networks:list") if action == "undefine" else reverse("networks:detail", args=[network.pk])
    return safe_redirect(request, fallback=fallback)


def _editable(request: HttpRequest, network_id: int) -> Network:
    network = selectors.network_get(request.user, network_id)
    access.require(request.user, "network.manage")
    return network


@login_required
@require_http_methods(["GET", "POST"])
@refusals_as_pages
def network_xml_edit(request: HttpRequest, network_id: int) -> HttpResponse:
    """GET: an empty editor its script fills from the API. POST ("Back to editing"): the text sent."""
    network = _editable(request, network_id)
    posted = request.method == "POST"
    context = {
        "network": network,
        "xml": request.POST.get("xml", "") if posted else "",
        "original": request.POST.get("original", "") if posted else "",
    }
    return render(request, "networks/xml_edit.html", context)


@login_required
@require_http_methods(["GET", "POST"])
@refusals_as_pages
def network_xml_review(request: HttpRequest, network_id: int) -> HttpResponse:
    """The side-by-side diff of the edited XML against what the editor loaded, or the refusal."""
    network = _editable(request, network_id)
    if request.method == "GET":
        return redirect("networks:xml_edit", network.pk)
    xml, original = request.POST.get("xml", ""), request.POST.get("original", "")
    try:
        actions.check_define_xml(network, xml)
    except Invalid as exc:
        if request.headers.get("X-Requested-With") == "fetch":
            return JsonResponse(error_body(exc.code, exc.message, exc.details), status=400)
        context = {"network": network, "xml": xml, "original": original, "error": exc.message}
        return render(request, "networks/xml_edit.html", context, status=400)
    context = {"network": network, "xml": xml, "original": original, "diff": xml_diff(original, xml)}
    fetched = request.headers.get("X-Requested-With") == "fetch"
    return render(request, "networks/xml_diff.html" if fetched else "networks/xml_review.html", context)
