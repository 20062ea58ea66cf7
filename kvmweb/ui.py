"""Glue shared by the server-rendered views: turning refusals into pages and messages."""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from kvmweb.errors import Forbidden, KvmwebError, NotVisible

View = Callable[..., HttpResponse]


def refusals_as_pages(view: View) -> View:
    """NotVisible renders 404, Forbidden 403, any other refusal a message on the page the user came from."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotVisible:
            return render(request, "404.html", status=404)
        except Forbidden as exc:
            return render(request, "403.html", {"reason": exc.message}, status=403)
        except KvmwebError as exc:
            messages.error(request, exc.message)
            return redirect(request.META.get("HTTP_REFERER") or "dashboard")

    return wrapper


def operation_queued(request: HttpRequest, op: Any) -> None:
    messages.info(request, f"{op.kind_label} for {op.target_label} queued (#{op.pk}).")


def safe_redirect(request: HttpRequest, *, fallback: str) -> HttpResponse:
    """Back to the `next` the form named, if it points into this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return redirect(target)
    return redirect(fallback)
