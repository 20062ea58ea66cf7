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
    # The persistent definition of a running network, when it differs from `xml`: what the XML editor edits.
    xml_inactive = models.TextField(blank=True)
    gone_since = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["host", "name"]
        constraints = [models.UniqueConstraint(fields=["host", "uuid"], name="one_network_row_per_host_uuid")]

    def __str__(self) -> str:
        return self.name


class NetworkLease(models.Model):
    """A DHCP lease of a network as libvirt last reported it; the lease refresh keeps these fresh."""

    class Type(models.TextChoices):
        IPV4 = "ipv4", "IPv4"
        IPV6 = "ipv6", "IPv6"

    network = models.ForeignKey(Network, on_delete=models.CASCADE, related_name="leases")
    mac = models.CharField(max_length=32)
    ip = models.GenericIPAddressField()
    prefix = models.PositiveSmallIntegerField(null=True, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    client_id = models.CharField(max_length=255, blank=True)
    expires = models.DateTimeField(null=True, blank=True)
    type = models.CharField(max_length=4, choices=Type.choices, default=Type.IPV4)
    seen = models.DateTimeField()

    class Meta:
        ordering = ["network", "type", "ip"]
        constraints = [
            models.UniqueConstraint(fields=["network", "mac", "ip"], name="one_lease_row_per_network_mac_ip"),
        ]

    def __str__(self) -> str:
        return f"{self.ip} ({self.mac})"
