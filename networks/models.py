from django.db import models


class Network(models.Model):
    """A libvirt virtual network on one host, as last observed."""

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="networks")
    uuid = models.UUIDField()
    name = models.CharField(max_length=255)
    active = models.BooleanField(default=False)
    autostart = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    bridge = models.CharField(max_length=64, blank=True)
    forward_mode = models.CharField(max_length=16, blank=True)
    xml = models.TextField(blank=True)
    gone_since = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["host", "name"]
        constraints = [models.UniqueConstraint(fields=["host", "uuid"], name="one_network_row_per_host_uuid")]

    def __str__(self) -> str:
        return self.name
