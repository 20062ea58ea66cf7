"""Pages that change pools: the "Define pool" form and the pool page's action buttons."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from hosts import selectors as host_selectors
from kvmweb import access
from kvmweb.actors import actor_from_request
from kvmweb.errors import Conflict, Invalid
from kvmweb.ui import operation_queued, refusals_as_pages, safe_redirect
from storage import pools, selectors
from storage.forms import PoolDefineForm


@login_required
@refusals_as_pages
def pool_new(request: HttpRequest) -> HttpResponse:
    actor = actor_from_request(request)
    access.require(request.user, "pool.manage")
    hosts = [(h.pk, h.name) for h in access.visible_hosts(request.user).order_by("name")]
    host_param = request.GET.get("host", "")
    initial = {"host": int(host_param)} if host_param.isdigit() else {}
    form = PoolDefineForm(request.POST or None, hosts=hosts, initial=initial)
    if request.method == "POST" and form.is_valid():
        host = host_selectors.host_get(request.user, form.cleaned_data["host"])
        try:
            op = pools.pool_define(actor=actor, host=host, data=form.to_data())
        except (Invalid, Conflict) as exc:
            _form_errors(form, exc)
        else:
            operation_queued(request, op)
            return redirect(f"{reverse('storage:list')}?host={host.pk}")
    return render(request, "storage/pool_form.html", {"form": form}, status=400 if form.errors else 200)


def _form_errors(form: PoolDefineForm, exc: Invalid | Conflict) -> None:
    fields = {key: value for key, value in (exc.details or {}).items() if key in form.fields}
    for key, value in fields.items():
        form.add_error(key, str(value))
    if not fields:
        form.add_error(None, exc.message)


@login_required
@require_POST
@refusals_as_pages
def pool_action(request: HttpRequest, pool_id: int, action: str) -> HttpResponse:
    pool = selectors.pool_get(request.user, pool_id)
    params: dict[str, Any] = {}
    if action == "undefine":
        params = {
            "delete_contents": request.POST.get("delete_contents", ""),
            "confirm": request.POST.get("confirm", ""),
        }
    op = pools.pool_action(actor=actor_from_request(request), pool=pool, action=action, params=params)
    operation_queued(request, op)
    return safe_redirect(request, fallback=reverse("storage:pool", args=[pool.pk]))
