from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from kvmweb import access
from kvmweb.ui import refusals_as_pages
from networks import selectors


@login_required
def network_list(request: HttpRequest) -> HttpResponse:
    host = request.GET.get("host", "")
    networks = list(selectors.network_list(request.user, host_id=int(host) if host.isdigit() else None))
    for network in networks:
        network.mode_sentence = selectors.mode_sentence(network)  # type: ignore[attr-defined]
    hosts = list(access.visible_hosts(request.user).only("id", "name"))
    return render(request, "networks/list.html", {"networks": networks, "hosts": hosts, "host_filter": host})


@login_required
@refusals_as_pages
def network_detail(request: HttpRequest, network_id: int) -> HttpResponse:
    network = selectors.network_get(request.user, network_id)
    context = {"network": network, "mode_sentence": selectors.mode_sentence(network)}
    return render(request, "networks/detail.html", context)
