from django.conf import settings
from django.db import models


class ConsoleSession(models.Model):
    """One browser connected to a guest's console, from connect to close: the audit trail of consoles."""

    class Kind(models.TextChoices):
        VNC = "vnc", "Graphical (VNC)"
        SERIAL = "serial", "Serial"

    vm = models.ForeignKey("vms.VirtualMachine", on_delete=models.CASCADE, related_name="console_sessions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    view_only = models.BooleanField(default=False)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    started = models.DateTimeField(auto_now_add=True, db_index=True)
    ended = models.DateTimeField(null=True, blank=True)
    # Seen from the browser: what it was sent (the screen) and what it sent (keys, pointer).
    bytes_to_client = models.PositiveBigIntegerField(default=0)
    bytes_from_client = models.PositiveBigIntegerField(default=0)
    end_reason = models.CharField(max_length=255, blank=True)
    audit_event = models.ForeignKey(
        "audit.AuditEvent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-started"]
        indexes = [models.Index(fields=["vm", "ended"]), models.Index(fields=["user", "ended"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} console of {self.vm_id} for {self.user_id}"

    @property
    def is_live(self) -> bool:
        return self.ended is None


class ConsoleShare(models.Model):
    """A view-only console grant on one VM for one user or for one team's members: they watch, their
    input is never forwarded."""

    vm = models.ForeignKey("vms.VirtualMachine", on_delete=models.CASCADE, related_name="console_shares")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="console_shares"
    )
    team = models.ForeignKey(
        "teams.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="console_shares"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created"]
        constraints = [
            models.UniqueConstraint(fields=["vm", "user"], name="one_console_share_per_vm_user"),
            models.UniqueConstraint(fields=["vm", "team"], name="one_console_share_per_vm_team"),
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, team__isnull=True)
                | models.Q(user__isnull=True, team__isnull=False),
                name="console_share_user_or_team",
            ),
        ]

    def __str__(self) -> str:
        whom = f"team {self.team_id}" if self.team_id else self.user_id
        return f"console of {self.vm_id} shared with {whom}"
