"""The console pages: the full-window console, and the token its script asks for before each connect."""

import json
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST

from consoles.services import console_open, console_vm
from kvmweb import access
from kvmweb.actors import actor_from_request
from kvmweb.api.errors import error_body
from kvmweb.errors import Conflict, KvmwebError
from kvmweb.ui import refusals_as_pages


@login_required
@ensure_csrf_cookie
@refusals_as_pages
def console_page(request: HttpRequest, vm_uuid: UUID) -> HttpResponse:
    """Around noVNC; no token here: the page's script asks for a fresh one right before each connect.

    That POST needs the CSRF cookie, and a viewer's page has no form that would set it.
    """
    vm = console_vm(actor=actor_from_request(request), uuid=vm_uuid)
    may_type = access.console_may_type(request.user, vm)
    context = {
        "vm": vm,
        "may_type": may_type,
        "view_only": not may_type or request.GET.get("view_only") == "1",
        "can_start": access.can_act(request.user, vm),
        "sees_vm": access.can_see(request.user, vm),
    }
    return render(request, "consoles/console.html", context)


@never_cache
@login_required
@require_POST
def console_token(request: HttpRequest, vm_uuid: UUID) -> JsonResponse:
    """{"token", "websocket_url", "expires", "view_only"} for one connect; 404 unseen, 409 no screen to show."""
    actor = actor_from_request(request)
    try:
        vm = console_vm(actor=actor, uuid=vm_uuid)
    except KvmwebError as exc:
        return _refusal(exc)
    try:
        ticket = console_open(actor=actor, vm=vm, view_only=_wants_view_only(request))
    except Conflict as exc:
        # With the state, the page shows "shut off" (and Start, for those who may) instead of an error.
        return _refusal(exc, state=vm.state)
    except KvmwebError as exc:
        return _refusal(exc)
    body = {
        "token": ticket.token,
        "websocket_url": ticket.websocket_url,
        "expires": ticket.expires,
        "view_only": ticket.view_only,
    }
    return JsonResponse(body)


def _refusal(exc: KvmwebError, **details: Any) -> JsonResponse:
    return JsonResponse(error_body(exc.code, exc.message, {**exc.details, **details}), status=exc.http_status)


def _wants_view_only(request: HttpRequest) -> bool:
    value: Any = request.POST.get("view_only")
    if value is None and request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = {}
        value = body.get("view_only") if isinstance(body, dict) else None
    return value in (True, "1", "true", "on", "yes")
