from django.db import models


class StoragePool(models.Model):
    """A libvirt storage pool on one host, as last observed."""

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="pools")
    uuid = models.UUIDField()
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=32, blank=True)
    state = models.CharField(max_length=16, blank=True)
    autostart = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    capacity = models.PositiveBigIntegerField(default=0)
    allocation = models.PositiveBigIntegerField(default=0)
    available = models.PositiveBigIntegerField(default=0)
    target_path = models.CharField(max_length=1024, blank=True)
    xml = models.TextField(blank=True)
    gone_since = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["host", "name"]
        constraints = [models.UniqueConstraint(fields=["host", "uuid"], name="one_pool_row_per_host_uuid")]

    def __str__(self) -> str:
        return self.name


class Volume(models.Model):
    """A volume in a pool, as last observed. Its key is unique within the host."""

    pool = models.ForeignKey(StoragePool, on_delete=models.CASCADE, related_name="volumes")
    name = models.CharField(max_length=255)
    key = models.CharField(max_length=1024)
    path = models.CharField(max_length=1024, blank=True)
    type = models.CharField(max_length=16, blank=True)
    format = models.CharField(max_length=16, blank=True)
    capacity = models.PositiveBigIntegerField(default=0)
    allocation = models.PositiveBigIntegerField(default=0)
    backing_path = models.CharField(max_length=1024, blank=True)
    # Set when kvmweb creates an encrypted volume: "luks", and the UUID of the libvirt secret holding
    # its passphrase (the passphrase itself is only ever on the host). The inventory leaves them alone.
    encryption = models.CharField(max_length=16, blank=True)
    secret_uuid = models.CharField(max_length=36, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pool", "name"]
        constraints = [models.UniqueConstraint(fields=["pool", "name"], name="one_volume_row_per_pool_name")]

    def __str__(self) -> str:
        return self.name
