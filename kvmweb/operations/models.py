from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from kvmweb.targets import Target


class Operation(models.Model):
    """One change to a host or a guest, run by a worker, with live progress and a result."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.PENDING, Status.RUNNING)

    kind = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32)
    target_id = models.CharField(max_length=64)
    target_label = models.CharField(max_length=255, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="operations"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    error_detail = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    log = models.JSONField(default=list, blank=True)
    queue = models.CharField(max_length=64, default="default")
    attempts = models.PositiveSmallIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField()

    # Not a column: the target's row, when a worker read it together with the rest of its batch.
    target_row: object = None

    class Meta:
        ordering = ["-created", "-id"]
        # Plain b-trees: db_index on a CharField adds a second, LIKE-pattern index on PostgreSQL, which nothing
        # here queries and which every claim and finish (both change the status) would write too.
        indexes = [
            models.Index(fields=["target_type", "target_id"]),
            models.Index(fields=["kind"], name="operation_kind"),
            models.Index(fields=["status"], name="operation_status"),
        ]
        constraints = [
            # The database itself guarantees at most one active operation per object.
            models.UniqueConstraint(
                fields=["target_type", "target_id"],
                condition=Q(status__in=["pending", "running"]),
                name="one_active_operation_per_target",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.target_label} ({self.status})"

    @property
    def target(self) -> Target:
        return Target(self.target_type, self.target_id, self.target_label)

    @property
    def kind_label(self) -> str:
        from kvmweb.operations.registry import label_for

        return label_for(self.kind)

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def duration(self) -> timedelta | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started
