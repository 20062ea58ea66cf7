"""The network page's DHCP reservation forms: add, edit and remove (POST only, each an operation)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from kvmweb.actors import actor_from_request
from kvmweb.ui import operation_queued, refusals_as_pages, safe_redirect
from networks import dhcp_reservations, selectors

FIELDS = ("family", "mac", "duid", "ip", "name")


def _back(request: HttpRequest, network_id: int) -> HttpResponse:
    return safe_redirect(request, fallback=reverse("networks:detail", args=[network_id]) + "#dhcp")


@login_required
@require_POST
@refusals_as_pages
def reservation_add(request: HttpRequest, network_id: int) -> HttpResponse:
    network = selectors.network_get(request.user, network_id)
    data = {key: request.POST.get(key, "") for key in FIELDS}
    op = dhcp_reservations.reservation_add(actor=actor_from_request(request), network=network, data=data)
    operation_queued(request, op)
    return _back(request, network.pk)


@login_required
@require_POST
@refusals_as_pages
def reservation_edit(request: HttpRequest, network_id: int, mac: str) -> HttpResponse:
    """`mac` is the URL's key: the reservation's MAC, or its address for an IPv6 one."""
    network = selectors.network_get(request.user, network_id)
    data = {key: request.POST[key] for key in FIELDS if key in request.POST}
    actor = actor_from_request(request)
    op = dhcp_reservations.reservation_edit(actor=actor, network=network, key=mac, data=data)
    operation_queued(request, op)
    return _back(request, network.pk)


@login_required
@require_POST
@refusals_as_pages
def reservation_remove(request: HttpRequest, network_id: int, mac: str) -> HttpResponse:
    network = selectors.network_get(request.user, network_id)
    op = dhcp_reservations.reservation_remove(actor=actor_from_request(request), network=network, key=mac)
    operation_queued(request, op)
    return _back(request, network.pk)
