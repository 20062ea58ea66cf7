"""What a domain snapshot is made of, checked before any XML is built or libvirt is asked.

An internal snapshot lives inside the qcow2 disks (and, for a running guest, holds its memory).
An external, disk-only snapshot freezes each disk and sends new writes to a qcow2 overlay file next
to it; ``ExternalDisk`` names that overlay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kvmweb.virt.errors import InvalidArgument

MAX_NAME = 64
MAX_DESCRIPTION = 1000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True, slots=True)
class ExternalDisk:
    """One disk of an external snapshot: its target (``vda``) and the overlay file to create."""

    target_dev: str
    overlay_path: str


@dataclass(frozen=True, slots=True)
class SnapshotSpec:
    name: str
    description: str = ""
    # Internal snapshots of a running guest hold its memory; a disk-only one never does.
    disk_only: bool = False
    external_disks: tuple[ExternalDisk, ...] = ()
    # Disks left out of the snapshot (read-only CD-ROMs, shareable disks).
    skipped_disks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_snapshot_name(self.name)
        if len(self.description) > MAX_DESCRIPTION:
            raise InvalidArgument(f"A snapshot description has at most {MAX_DESCRIPTION} characters.")
        if self.disk_only and not self.external_disks:
            raise InvalidArgument("A disk-only snapshot needs at least one disk to put an overlay on.")
        if self.external_disks and not self.disk_only:
            raise InvalidArgument("Overlay files are only for disk-only (external) snapshots.")


def check_snapshot_name(name: str) -> str:
    """A snapshot name is 1-64 letters, digits, dots, dashes or underscores, starting with a letter or digit.

    It also names overlay files, so it never holds ``/`` or starts with a dot (no ``..``).
    """
    if not name:
        raise InvalidArgument("Give the snapshot a name.")
    if len(name) > MAX_NAME:
        raise InvalidArgument(f"A snapshot name has at most {MAX_NAME} characters.")
    if not _NAME.match(name):
        raise InvalidArgument(
            f"{name!r} is not a usable snapshot name: use letters, digits, '.', '-' and '_', "
            "starting with a letter or digit."
        )
    return name
