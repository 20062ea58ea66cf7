from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from hosts import selectors, services
from hosts.forms import HostForm
from kvmweb import access
from kvmweb.actors import actor_from_request
from kvmweb.errors import Invalid
from kvmweb.ui import operation_queued, refusals_as_pages, safe_redirect


@login_required
def host_list(request: HttpRequest) -> HttpResponse:
    hosts = selectors.hosts_for_list(request.user)
    return render(request, "hosts/list.html", {"hosts": hosts, "can_manage": access.is_admin(request.user)})


@login_required
@refusals_as_pages
def host_detail(request: HttpRequest, host_id: int) -> HttpResponse:
    host = selectors.host_get(request.user, host_id)
    context = {
        "host": host,
        "operations": selectors.host_operations(host),
        "can_manage": access.is_admin(request.user),
        **selectors.host_inventory(request.user, host),
    }
    return render(request, "hosts/detail.html", context)


@login_required
@refusals_as_pages
def host_add(request: HttpRequest) -> HttpResponse:
    actor = actor_from_request(request)
    form = HostForm(request.POST or None, initial={"enabled": True})
    if request.method == "POST":
        access.authorize(actor, "host.add")
        if form.is_valid():
            try:
                host, op = services.host_create(actor=actor, data=form.to_input())
            except Invalid as exc:
                _form_errors(form, exc)
            else:
                if op:
                    operation_queued(request, op)
                return redirect("hosts:detail", host_id=host.pk)
    else:
        access.require(request.user, "host.add")
    return render(request, "hosts/form.html", {"form": form, "host": None}, status=400 if form.errors else 200)


@login_required
@refusals_as_pages
def host_edit(request: HttpRequest, host_id: int) -> HttpResponse:
    actor = actor_from_request(request)
    host = selectors.host_get(request.user, host_id)
    fields = ("name", "uri", "ssh_key_path", "tls_pki_path", "console_address", "queue", "enabled")
    initial = {f: getattr(host, f) for f in fields}
    form = HostForm(request.POST or None, initial=initial)
    if request.method == "POST":
        access.authorize(actor, "host.change", host, target=host.as_target())
        if form.is_valid():
            try:
                host, op = services.host_update(actor=actor, host=host, data=form.to_input())
            except Invalid as exc:
                _form_errors(form, exc)
            else:
                if op:
                    operation_queued(request, op)
                return redirect("hosts:detail", host_id=host.pk)
    else:
        access.require(request.user, "host.change", host)
    return render(request, "hosts/form.html", {"form": form, "host": host}, status=400 if form.errors else 200)


@login_required
@require_POST
@refusals_as_pages
def host_refresh(request: HttpRequest, host_id: int) -> HttpResponse:
    actor = actor_from_request(request)
    host = selectors.host_get(request.user, host_id)
    access.authorize(actor, "host.refresh", host, target=host.as_target())
    op = services.host_refresh(actor=actor, host=host)
    operation_queued(request, op)
    return safe_redirect(request, fallback=reverse("hosts:detail", args=[host.pk]))


@login_required
@refusals_as_pages
def host_delete(request: HttpRequest, host_id: int) -> HttpResponse:
    actor = actor_from_request(request)
    host = selectors.host_get(request.user, host_id)
    error = ""
    if request.method == "POST":
        access.authorize(actor, "host.delete", host, target=host.as_target())
        try:
            services.host_delete(actor=actor, host=host, confirm_name=request.POST.get("confirm_name", ""))
        except Invalid as exc:
            error = exc.message
        else:
            messages.success(request, f"{host.name} was removed from kvmweb. Its guests keep running.")
            return redirect("hosts:list")
    else:
        access.require(request.user, "host.delete", host)
    return render(request, "hosts/confirm_delete.html", {"host": host, "error": error}, status=400 if error else 200)


def _form_errors(form: HostForm, exc: Invalid) -> None:
    for field, message in exc.details.items():
        form.add_error(field if field in form.fields else None, str(message))
    if not exc.details:
        form.add_error(None, exc.message)
