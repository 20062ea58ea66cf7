from django.db import models


class StatSample(models.Model):
    """One point of a VM's or host's time series at one resolution.

    ``ts`` is the start of the bucket the point covers (10 s, 1 min or 10 min). Rates are per
    second over that bucket; a value libvirt did not report is None, never a guess.
    """

    class Kind(models.TextChoices):
        VM = "vm", "Virtual machine"
        HOST = "host", "Host"

    kind = models.CharField(max_length=4, choices=Kind.choices)
    # A VM's UUID, or a host's primary key, as text: a VM's series outlives its row and its host.
    object_key = models.CharField(max_length=64)
    resolution = models.PositiveIntegerField(help_text="Seconds per point: 10, 60 or 600.")
    ts = models.DateTimeField()
    cpu_pct = models.FloatField(null=True)
    mem_used_kib = models.BigIntegerField(null=True)
    mem_total_kib = models.BigIntegerField(null=True)
    disk_rd_bps = models.FloatField(null=True)
    disk_wr_bps = models.FloatField(null=True)
    net_rx_bps = models.FloatField(null=True)
    net_tx_bps = models.FloatField(null=True)

    class Meta:
        constraints = [
            # Also the index every chart reads through: one object, one resolution, a time range.
            models.UniqueConstraint(fields=["kind", "object_key", "resolution", "ts"], name="stats_sample_point"),
        ]
        indexes = [
            # Downsampling and pruning scan one resolution by time, across all objects.
            models.Index(fields=["resolution", "ts"], name="stats_sample_res_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.object_key}@{self.resolution}s {self.ts:%Y-%m-%d %H:%M:%S}"
