"""Pages for view-only console sharing: add and revoke a share, end a session, and /consoles/ for administrators."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from consoles import shares
from kvmweb import access
from kvmweb.actors import actor_from_request
from kvmweb.ui import refusals_as_pages, safe_redirect


def _back_to_vm(vm_uuid: UUID) -> str:
    return reverse("vms:detail", args=[vm_uuid]) + "#console"


@login_required
@require_POST
@refusals_as_pages
def share_add(request: HttpRequest, vm_uuid: UUID) -> HttpResponse:
    actor = actor_from_request(request)
    vm = shares.share_vm(actor=actor, uuid=vm_uuid, action="console.share")
    if request.POST.get("team"):
        share = shares.share_add_team(actor=actor, vm=vm, slug=request.POST["team"])
        messages.success(request, f"Everyone in {share.team} can now watch {vm.name}'s console (view-only).")
    else:
        share = shares.share_add(actor=actor, vm=vm, username=request.POST.get("user", ""))
        messages.success(request, f"{share.user} can now watch {vm.name}'s console (view-only).")
    return safe_redirect(request, fallback=_back_to_vm(vm.uuid))


@login_required
@require_POST
@refusals_as_pages
def share_revoke(request: HttpRequest, vm_uuid: UUID, username: str) -> HttpResponse:
    actor = actor_from_request(request)
    vm = shares.share_vm(actor=actor, uuid=vm_uuid, action="console.unshare")
    try:
        shares.share_revoke(actor=actor, vm=vm, username=username)
    except shares.ShareMissing as exc:  # revoked already, in another tab or by someone else
        messages.info(request, exc.message)
    else:
        messages.success(request, f"{username} can no longer watch {vm.name}'s console; any view of theirs was closed.")
    return safe_redirect(request, fallback=_back_to_vm(vm.uuid))


@login_required
@require_POST
@refusals_as_pages
def share_revoke_team(request: HttpRequest, vm_uuid: UUID, slug: str) -> HttpResponse:
    actor = actor_from_request(request)
    vm = shares.share_vm(actor=actor, uuid=vm_uuid, action="console.unshare")
    try:
        shares.share_revoke_team(actor=actor, vm=vm, slug=slug)
    except shares.ShareMissing as exc:  # revoked already, in another tab or by someone else
        messages.info(request, exc.message)
    else:
        messages.success(
            request, f"Team {slug} can no longer watch {vm.name}'s console; views that relied on it closed."
        )
    return safe_redirect(request, fallback=_back_to_vm(vm.uuid))


@login_required
@require_POST
@refusals_as_pages
def session_end(request: HttpRequest, session_id: int) -> HttpResponse:
    actor = actor_from_request(request)
    session = shares.session_get(actor=actor, session_id=session_id)
    shares.session_end(actor=actor, session=session)
    who = session.user.get_username() if session.user is not None else "a deleted user"
    messages.success(request, f"Ending {who}'s console session on {session.vm.name}.")
    return safe_redirect(request, fallback=reverse("console_shares:sessions"))


@login_required
@refusals_as_pages
def session_list(request: HttpRequest) -> HttpResponse:
    access.require(request.user, "console.sessions")
    context = {"live": shares.all_live_sessions(), "ended": shares.recent_ended_sessions(), "nav_section": "consoles"}
    return render(request, "consoles/sessions.html", context)
