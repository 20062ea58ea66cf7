from typing import Any

from django.conf import settings
from django.db import models

from kvmweb import virt
from kvmweb.targets import Target

CENTRAL_QUEUE = "default"


class Host(models.Model):
    """A libvirt endpoint kvmweb manages, and what it last reported about itself."""

    class State(models.TextChoices):
        CONNECTED = "connected", "Connected"
        UNREACHABLE = "unreachable", "Unreachable"
        DISABLED = "disabled", "Disabled"

    name = models.CharField(max_length=64, unique=True)
    uri = models.CharField(max_length=512)
    # References to credentials on the worker's disk; the secrets themselves never enter the database.
    ssh_key_path = models.CharField(max_length=512, blank=True)
    tls_pki_path = models.CharField(max_length=512, blank=True)
    # Remote hosts only: the IP or DNS name on the host that kvmweb's console proxy connects to, and
    # that the guests kvmweb defines there listen on for VNC. Empty: the host name in the URI.
    # Local hosts leave it empty: their guests' VNC is a unix socket.
    console_address = models.CharField(max_length=253, blank=True)
    # The Celery queue this host's operations go to: a worker running on the host consumes it (host.<name>).
    # Empty: the central workers' queue ("default"); they reach the host through its URI.
    queue = models.CharField(max_length=64, blank=True)
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.UNREACHABLE, db_index=True)
    last_error = models.TextField(blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    libvirt_version = models.CharField(max_length=32, blank=True)
    hypervisor = models.CharField(max_length=32, blank=True)
    hypervisor_version = models.CharField(max_length=32, blank=True)
    capabilities = models.JSONField(default=dict, blank=True)
    # The host's NICs and bridges as its last refresh read them: {"read": ISO time, "reported": bool,
    # "items": [HostInterface.to_dict(), ...]} (networks/interfaces.py); empty until then.
    interfaces = models.JSONField(default=dict, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="hosts")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_simulated(self) -> bool:
        return self.uri.startswith(("test:", "test+"))

    @property
    def task_queue(self) -> str:
        return self.queue or CENTRAL_QUEUE

    @property
    def virt_types(self) -> list[str]:
        types: list[str] = self.capabilities.get("virt_types") or []
        return types

    def as_target(self) -> Target:
        return Target("host", str(self.pk), self.name)

    def virt_target(self) -> virt.HostTarget:
        return virt.HostTarget(uri=self.uri, keyfile=self.ssh_key_path or None, pkipath=self.tls_pki_path or None)

    def capability(self, key: str) -> Any:
        return self.capabilities.get(key)
