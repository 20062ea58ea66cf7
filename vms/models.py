from django.conf import settings
from django.db import models

from kvmweb.targets import Target


class VirtualMachine(models.Model):
    """What libvirt last said about a guest, plus what only kvmweb knows (its owner).

    Identity is the UUID: a guest renamed, redefined or migrated keeps its row and its owner.
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        BLOCKED = "blocked", "Blocked"
        PAUSED = "paused", "Paused"
        SHUTDOWN = "shutdown", "Shutting down"
        SHUTOFF = "shutoff", "Shut off"
        CRASHED = "crashed", "Crashed"
        PMSUSPENDED = "pmsuspended", "Suspended (power management)"
        NOSTATE = "nostate", "No state"
        GONE = "gone", "Gone"

    uuid = models.UUIDField(unique=True)
    # Indexed by the (host, state) and (owner, state) pairs below, which also serve lookups by host or owner.
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="vms", db_index=False)
    name = models.CharField(max_length=255)
    state = models.CharField(max_length=16, choices=State.choices)
    state_reason = models.CharField(max_length=32, blank=True)
    vcpus = models.PositiveIntegerField(default=0)
    memory_kib = models.PositiveBigIntegerField(default=0)
    max_memory_kib = models.PositiveBigIntegerField(default=0)
    autostart = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    has_managed_save = models.BooleanField(default=False)
    domain_type = models.CharField(max_length=16, blank=True)
    os_type = models.CharField(max_length=16, blank=True)
    arch = models.CharField(max_length=32, blank=True)
    title = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    security_model = models.CharField(max_length=32, blank=True)
    security_label = models.CharField(max_length=255, blank=True)
    xml = models.TextField(blank=True)
    # The persistent definition (the next boot's) when it differs from the live `xml`, i.e. while a
    # persistent VM runs with changes made since it started; empty otherwise. Pages and the XML
    # editor read it from here: a page never asks libvirt.
    xml_inactive = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="vms", db_index=False
    )
    # What only kvmweb knows: a template is a shut-off VM whose disks new VMs are made from.
    is_template = models.BooleanField(default=False, db_index=True)
    tags = models.JSONField(default=list, blank=True)
    # Changes written to the persistent definition that take effect at the next boot, e.g.
    # {"vcpus": 4}; cleared when the VM is next seen shut off.
    pending = models.JSONField(default=dict, blank=True)
    # Each NIC's current IP addresses as last read from libvirt (vms/nic_addresses.py), while it runs:
    # [{"mac", "name", "source": "lease"|"agent", "addresses": [{"type", "address", "prefix"}]}].
    addresses = models.JSONField(default=list, blank=True)
    # Bumped on every observed change, so clients can drop a message older than what they show.
    version = models.PositiveBigIntegerField(default=1)
    first_seen = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)
    state_changed = models.DateTimeField(null=True, blank=True)
    gone_since = models.DateTimeField(null=True, blank=True)

    # Not a column: what a batched operation observed and changed in memory, for its batch to write together.
    held_fields: tuple[str, ...] = ()

    class Meta:
        ordering = ["name", "id"]
        # A state change rewrites every index of the row (PostgreSQL can't update it in place when an indexed
        # column changes), so each index costs every start and stop: no LIKE-pattern twins (search is
        # icontains, which they can't serve) and no single-column copies of the pairs' first column.
        indexes = [
            models.Index(fields=["host", "state"]),
            models.Index(fields=["owner", "state"]),
            models.Index(fields=["name"], name="vm_name"),
            models.Index(fields=["state"], name="vm_state"),
        ]

    def __str__(self) -> str:
        return self.name

    def as_target(self) -> Target:
        return Target("vm", str(self.uuid), self.name)

    @property
    def is_gone(self) -> bool:
        return self.state == self.State.GONE


from vms.snapshot_models import Snapshot  # noqa: E402, F401  (the model lives in its own module)
