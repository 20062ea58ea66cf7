from django.contrib import admin

from kvmweb.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The trail is append-only: nobody edits or deletes it here."""

    list_display = ("created", "actor_name", "ip", "action", "target_label", "outcome")
    list_filter = ("outcome", "action", "target_type")
    search_fields = ("actor_name", "target_label", "message")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
