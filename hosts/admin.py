from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from hosts.models import Host
from kvmweb.actors import actor_from_request
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    """Only membership is edited here; everything else goes through the host pages and their operations."""

    list_display = ("name", "uri", "state", "enabled", "last_seen")
    list_filter = ("state", "enabled")
    search_fields = ("name", "uri")
    filter_horizontal = ("members",)
    fields = ("name", "uri", "state", "members")
    readonly_fields = ("name", "uri", "state")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        names = ", ".join(sorted(u.get_username() for u in form.instance.members.all())) or "nobody"
        audit_record(
            actor=actor_from_request(request),
            action="host.members",
            target=form.instance.as_target(),
            outcome=AuditEvent.Outcome.SUCCEEDED,
            message=f"Members: {names}",
        )
