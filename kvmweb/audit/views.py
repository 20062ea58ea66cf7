from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from kvmweb import access
from kvmweb.audit.models import AuditEvent
from kvmweb.ui import refusals_as_pages

FILTER_FIELDS = ("actor", "action", "outcome", "target_type", "since")


@login_required
@refusals_as_pages
def audit_list(request: HttpRequest) -> HttpResponse:
    events = access.visible_audit_events(request.user).select_related("actor")
    filters = {name: request.GET.get(name, "").strip() for name in FILTER_FIELDS}
    if filters["actor"]:
        events = events.filter(actor_name__icontains=filters["actor"])
    if filters["action"]:
        events = events.filter(action__startswith=filters["action"])
    if filters["outcome"] in AuditEvent.Outcome.values:
        events = events.filter(outcome=filters["outcome"])
    if filters["target_type"]:
        events = events.filter(target_type=filters["target_type"])
    since = _parse_date(filters["since"])
    if since is not None:
        events = events.filter(created__gte=since)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    context = {"page_obj": page, "filters": filters, "outcomes": AuditEvent.Outcome.choices}
    return render(request, "audit/list.html", context)


def _parse_date(value: str) -> datetime | None:
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        return None
    return timezone.make_aware(day)
