from django.contrib import admin

from kvmweb.operations.models import Operation


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    """Read-only: operations change state only through workers and the reaper."""

    list_display = ("id", "kind", "target_label", "status", "progress", "requested_by", "created")
    list_filter = ("status", "kind")
    search_fields = ("target_label", "kind")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
