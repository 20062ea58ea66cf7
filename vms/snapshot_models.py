"""Snapshot rows: what libvirt last said about a VM's snapshots, so pages never ask it while rendering.

The rows of one VM are replaced as a whole after every snapshot operation (vms/snapshots.py);
``depth`` and ``position`` keep the tree's shape for the page, parents before their children.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import models

if TYPE_CHECKING:
    from storage.models import Volume


@dataclass(frozen=True)
class RawDisk:
    target_dev: str
    path: str
    volume: Volume | None


@dataclass(frozen=True)
class SnapshotSupport:
    """Which snapshots a VM can take, from its stored XML and snapshot rows (no libvirt call)."""

    internal_refusal: str = ""
    external_refusal: str = ""
    raw_disks: list[RawDisk] = field(default_factory=list)


class Snapshot(models.Model):
    vm = models.ForeignKey("vms.VirtualMachine", on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=64)
    parent_name = models.CharField(max_length=64, blank=True)
    description = models.TextField(blank=True)
    # The VM's state when taken, in libvirt's words: running, paused, shutoff or disk-snapshot.
    state = models.CharField(max_length=16, blank=True)
    created = models.DateTimeField()
    is_current = models.BooleanField(default=False)
    has_memory = models.BooleanField(default=False)
    external = models.BooleanField(default=False)
    # [{"target_dev": "vda", "kind": "internal|external|no", "path": overlay or null}]
    disks = models.JSONField(default=list, blank=True)
    depth = models.PositiveIntegerField(default=0)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["vm", "position"]
        constraints = [models.UniqueConstraint(fields=["vm", "name"], name="one_snapshot_row_per_vm_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def overlays(self) -> list[dict[str, Any]]:
        return [disk for disk in self.disks if disk.get("kind") == "external" and disk.get("path")]
