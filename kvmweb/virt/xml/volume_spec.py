"""A typed description of a storage volume, checked when it is made.

As with ``DomainSpec``, a spec that exists is valid: a bad name or an absurd size is refused with a
plain message before anything reaches the host.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, get_args

from kvmweb.virt.errors import InvalidArgument
from kvmweb.virt.xml.checks import check_absolute_path, check_choice, check_pattern, require

VolumeFormat = Literal["qcow2", "raw"]
Allocation = Literal["thin", "metadata", "full"]

MIB = 1024**2
MIN_CAPACITY = MIB
MAX_CAPACITY = 64 * 1024**4

# A volume name is a file name in a directory pool: no '/', and no leading '.' (hidden files, '.'
# and '..') or '-' (read as an option by the tools that handle the file).
_VOLUME_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: int) -> str:
    """``size`` bytes for people: ``512 bytes``, ``1.5 GiB``, ``64 TiB`` (one decimal, cut off)."""
    if abs(size) < 1024:
        return f"{size} byte" if size == 1 else f"{size} bytes"
    value = float(size)
    unit = -1
    while abs(value) >= 1024 and unit < len(_SIZE_UNITS) - 1:
        value /= 1024
        unit += 1
    # Cut, not rounded: 1 MiB minus a byte must not read as "1024 KiB", nor free space as more than it is.
    return f"{math.trunc(value * 10) / 10:.1f}".removesuffix(".0") + f" {_SIZE_UNITS[unit]}"


def check_secret_uuid(field: str, value: object) -> str:
    """The UUID of a libvirt secret, as libvirt writes it (lower case, with dashes)."""
    require(isinstance(value, str), f"{field} must be a UUID; got {value!r}.")
    check_pattern(field, str(value), _UUID, "must be a UUID in lower case with dashes")
    return str(value)


def check_capacity(field: str, value: object) -> None:
    """A whole number of bytes from 1 MiB to 64 TiB; anything else is a mistake, not a volume."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{field} must be a whole number of bytes; got {value!r}.")
    require(
        MIN_CAPACITY <= value <= MAX_CAPACITY,
        f"{field} must be from {human_size(MIN_CAPACITY)} to {human_size(MAX_CAPACITY)}; got {human_size(value)}.",
    )


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    """A new volume. ``allocation`` is how much is written up front: nothing (``thin``), the qcow2
    tables (``metadata``) or every byte (``full``, so the guest can never hit a full pool)."""

    name: str
    capacity_bytes: int
    format: VolumeFormat = "qcow2"
    allocation: Allocation = "thin"
    backing_path: str | None = None
    backing_format: VolumeFormat | None = None
    # The UUID of a libvirt passphrase secret: the volume is then a LUKS-encrypted qcow2 (kvmweb.virt.secrets).
    encryption_secret: str | None = None

    def __post_init__(self) -> None:
        check_pattern(
            "Volume name",
            self.name,
            _VOLUME_NAME,
            "may use letters, digits, '-', '_' and '.' (up to 255, not starting with '-' or '.')",
        )
        check_capacity("Capacity", self.capacity_bytes)
        check_choice("Volume format", self.format, get_args(VolumeFormat))
        check_choice("Allocation", self.allocation, get_args(Allocation))
        require(
            self.allocation != "metadata" or self.format == "qcow2",
            "Metadata preallocation only applies to qcow2; a raw volume is thin or full.",
        )
        self._check_backing()
        self._check_encryption()

    def _check_encryption(self) -> None:
        if self.encryption_secret is None:
            return
        require(self.format == "qcow2", "Only a qcow2 volume is encrypted here (LUKS inside qcow2); raw is not.")
        require(self.backing_path is None, "An encrypted volume cannot have a backing file here.")
        check_secret_uuid("Encryption secret", self.encryption_secret)

    def _check_backing(self) -> None:
        if self.backing_path is None:
            require(self.backing_format is None, "A backing format needs a backing file.")
            return
        require(self.format == "qcow2", "Only a qcow2 volume can have a backing file.")
        check_absolute_path("Backing file", self.backing_path)
        # Without a format the host would have to guess it from the file's first bytes, and a
        # guest can write a fake qcow2 header that points at any file on the host.
        require(self.backing_format is not None, "A backing file needs its format (qcow2 or raw).")
        check_choice("Backing format", self.backing_format, get_args(VolumeFormat))

    @property
    def allocation_bytes(self) -> int:
        """What goes in ``<allocation>``; metadata preallocation is a create flag, not a size."""
        return self.capacity_bytes if self.allocation == "full" else 0
