"""Volume pages: a volume, the ISO library, the upload form, and the forms behind the pool's volume table."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from kvmweb import access
from kvmweb.actors import actor_from_request
from kvmweb.ui import operation_queued, refusals_as_pages, safe_redirect
from storage import selectors, volumes
from storage.volumes import SOURCE_KEPT


@login_required
@refusals_as_pages
def volume_detail(request: HttpRequest, volume_id: int) -> HttpResponse:
    volume = volumes.volume_get(request.user, volume_id)
    context = {
        "volume": volume,
        "pool": volume.pool,
        "chain": volumes.backing_chain(volume),
        "users": volumes.volume_users(volume),
        "may_manage": access.is_admin(request.user),
        "source_kept": SOURCE_KEPT,
    }
    return render(request, "storage/volume.html", context)


@login_required
def iso_library(request: HttpRequest) -> HttpResponse:
    return render(request, "storage/isos.html", {"isos": list(volumes.iso_list(request.user))})


@login_required
@refusals_as_pages
def upload_page(request: HttpRequest, pool_id: int) -> HttpResponse:
    pool = selectors.pool_get(request.user, pool_id)
    access.require(request.user, volumes.MANAGE)
    return render(request, "storage/upload.html", {"pool": pool})


@login_required
@require_POST
@sensitive_post_parameters("passphrase", "passphrase_confirm")
@refusals_as_pages
def volume_create(request: HttpRequest, pool_id: int) -> HttpResponse:
    actor = actor_from_request(request)
    pool = volumes.pool_for_change(actor=actor, user=request.user, pool_id=pool_id)
    op = volumes.volume_create(actor=actor, pool=pool, data=request.POST.dict())
    operation_queued(request, op)
    return safe_redirect(request, fallback=reverse("storage:pool", args=[pool.pk]))


@login_required
@require_POST
@refusals_as_pages
def volume_action(request: HttpRequest, volume_id: int, action: str) -> HttpResponse:
    actor = actor_from_request(request)
    volume = volumes.volume_for_action(actor=actor, user=request.user, volume_id=volume_id)
    op = volumes.volume_action(actor=actor, volume=volume, action=action, params=request.POST.dict())
    operation_queued(request, op)
    if op.kind == "volume.clone":
        messages.info(request, SOURCE_KEPT)
    page = ("storage:pool", volume.pool_id) if action == "delete" else ("storage:volume", volume.pk)
    fallback = reverse(page[0], args=[page[1]])
    return safe_redirect(request, fallback=fallback)
