"""Typed descriptions of a virtual machine, checked when they are made.

A spec that exists is valid, so the builder never has to guess and a bad request fails with a
plain message before anything reaches libvirt.
"""

from __future__ import annotations

import ipaddress
import re
import uuid as uuidlib
from dataclasses import dataclass
from typing import Literal, get_args

from kvmweb.virt.xml.bandwidth import Bandwidth
from kvmweb.virt.xml.checks import (
    check_absolute_path,
    check_choice,
    check_int,
    check_pattern,
    check_text,
    require,
)
from kvmweb.virt.xml.volume_spec import check_secret_uuid

DomainType = Literal["kvm", "qemu"]
Firmware = Literal["bios", "uefi"]
BootDevice = Literal["cdrom", "hd", "network"]
DiskDevice = Literal["disk", "cdrom"]
DiskFormat = Literal["qcow2", "raw"]
DiskBus = Literal["virtio", "sata", "scsi", "ide"]
NicModel = Literal["virtio", "e1000", "rtl8139"]
LinkState = Literal["up", "down"]
SharePolicy = Literal["allow-exclusive", "force-shared", "ignore"]

ARCHES = ("x86_64", "i686", "aarch64", "ppc64le", "s390x", "riscv64")
MAX_MEMORY_MIB = 16 * 1024 * 1024
MAX_VCPUS = 1024

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_MACHINE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_OBJECT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_TARGET_DEV = re.compile(r"(vd|sd|hd)[a-z]{1,2}")
_BUS_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}
# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


@dataclass(frozen=True, slots=True)
class DiskSpec:
    device: DiskDevice = "disk"
    source_file: str | None = None
    pool: str | None = None
    volume: str | None = None
    format: DiskFormat = "qcow2"
    target_dev: str = "vda"
    bus: DiskBus = "virtio"
    readonly: bool = False
    # The UUID of the passphrase secret of a LUKS-encrypted qcow2 image (VolumeSpec.encryption_secret).
    encryption_secret: str | None = None

    def __post_init__(self) -> None:
        check_choice("Disk device", self.device, get_args(DiskDevice))
        check_choice("Disk format", self.format, get_args(DiskFormat))
        check_choice("Disk bus", self.bus, get_args(DiskBus))
        self._check_source()
        if self.encryption_secret is not None:
            require(self.device == "disk" and self.format == "qcow2", "Only a qcow2 disk is encrypted here (LUKS).")
            check_secret_uuid("Encryption secret", self.encryption_secret)
        check_pattern(
            "Disk target",
            self.target_dev,
            _TARGET_DEV,
            "must look like vda, sdb or hdc",
        )
        prefix = _BUS_PREFIX[self.bus]
        require(
            self.target_dev.startswith(prefix),
            f"Disk target {self.target_dev!r} does not match bus {self.bus}: use {prefix}a, ...",
        )
        require(
            not (self.device == "cdrom" and self.bus == "virtio"),
            "A CD-ROM cannot sit on the virtio bus: use sata, scsi or ide.",
        )

    def _check_source(self) -> None:
        has_file = self.source_file is not None
        has_volume = self.pool is not None or self.volume is not None
        require(
            not (has_file and has_volume),
            "A disk takes a file or a pool volume, not both.",
        )
        if self.source_file is not None:
            check_absolute_path("Disk file", self.source_file)
        if has_volume:
            require(
                self.pool is not None and self.volume is not None,
                "A pool volume needs both the pool and the volume name.",
            )
            check_pattern("Pool name", self.pool or "", _OBJECT_NAME, "is not a valid pool name")
            check_text("Volume name", self.volume or "", max_length=255)
        require(
            has_file or has_volume or self.device == "cdrom",
            "A disk needs a source: a file or a pool volume (only a CD-ROM may be empty).",
        )

    @property
    def has_source(self) -> bool:
        return self.source_file is not None or self.volume is not None


@dataclass(frozen=True, slots=True)
class NicSpec:
    network: str | None = None
    bridge: str | None = None
    mac: str | None = None
    model: NicModel = "virtio"
    portgroup: str | None = None
    link: LinkState = "up"
    bandwidth: Bandwidth | None = None

    def __post_init__(self) -> None:
        require(
            (self.network is None) != (self.bridge is None),
            "A network interface needs exactly one of a libvirt network or a host bridge.",
        )
        if self.network is not None:
            check_pattern("Network", self.network, _OBJECT_NAME, "is not a valid network name")
        if self.bridge is not None:
            check_pattern("Bridge", self.bridge, _OBJECT_NAME, "is not a valid bridge name")
        if self.portgroup is not None:
            require(
                self.network is not None,
                "A port group only applies to a libvirt network.",
            )
            check_pattern("Port group", self.portgroup, _OBJECT_NAME, "is not a valid name")
        check_choice("NIC model", self.model, get_args(NicModel))
        if self.mac is not None:
            check_pattern("MAC address", self.mac, _MAC, "must look like 52:54:00:12:34:56")
            require(
                int(self.mac[:2], 16) & 1 == 0,
                f"MAC address {self.mac} is a multicast address; a NIC needs a unicast one.",
            )
        check_choice("Link state", self.link, get_args(LinkState))
        require(
            self.bandwidth is None or isinstance(self.bandwidth, Bandwidth),
            "A NIC's bandwidth must be a Bandwidth.",
        )


@dataclass(frozen=True, slots=True)
class VncSpec:
    """VNC console, listening on a unix socket (``socket``, or one libvirt names: ``auto_socket``) or an IP address."""

    socket: str | None = None
    listen_address: str | None = None
    autoport: bool = True
    port: int | None = None
    share_policy: SharePolicy = "force-shared"
    auto_socket: bool = False

    def __post_init__(self) -> None:
        require(
            [self.socket is not None, self.listen_address is not None, self.auto_socket].count(True) == 1,
            "VNC needs exactly one of a unix socket path, a socket libvirt names, or a listen address.",
        )
        check_choice("VNC share policy", self.share_policy, get_args(SharePolicy))
        if self.socket is not None:
            check_absolute_path("VNC socket", self.socket, max_length=_MAX_SOCKET_PATH)
            require(self.port is None, "A VNC unix socket has no port.")
        if self.listen_address is not None:
            self._check_address()

    def _check_address(self) -> None:
        try:
            ipaddress.ip_address(self.listen_address or "")
        except ValueError:
            require(
                False,
                f"VNC listen address {self.listen_address!r} is not an IP address.",
            )
        if self.autoport:
            require(self.port is None, "Give a VNC port only when autoport is off.")
        else:
            check_int("VNC port", self.port, 5900, 65535)


@dataclass(frozen=True, slots=True)
class SerialSpec:
    """A pty serial port (and its console), optionally copied to a log file on the host."""

    log_file: str | None = None

    def __post_init__(self) -> None:
        if self.log_file is not None:
            check_absolute_path("Serial log file", self.log_file)


@dataclass(frozen=True, slots=True)
class DomainSpec:
    name: str
    memory_mib: int
    vcpus: int
    uuid: str | None = None
    domain_type: DomainType = "kvm"
    arch: str = "x86_64"
    machine: str | None = None
    firmware: Firmware = "bios"
    boot: tuple[BootDevice, ...] = ("hd",)
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    graphics: VncSpec | None = None
    serial: SerialSpec | None = None
    guest_agent: bool = False
    rng: bool = False
    balloon: bool = True
    description: str | None = None

    def __post_init__(self) -> None:
        self._freeze_sequences()
        check_pattern(
            "Name",
            self.name,
            _NAME,
            "may use letters, digits, '-', '_' and '.' (up to 64, not starting with '-' or '.')",
        )
        check_int("Memory (MiB)", self.memory_mib, 1, MAX_MEMORY_MIB)
        check_int("vCPUs", self.vcpus, 1, MAX_VCPUS)
        if self.uuid is not None:
            _check_uuid(self.uuid)
        check_choice("Domain type", self.domain_type, get_args(DomainType))
        check_choice("Architecture", self.arch, ARCHES)
        if self.machine is not None:
            check_pattern("Machine type", self.machine, _MACHINE, "is not a machine type name")
        check_choice("Firmware", self.firmware, get_args(Firmware))
        self._check_boot()
        self._check_devices()
        if self.description is not None:
            check_text("Description", self.description, one_line=False)

    def _freeze_sequences(self) -> None:
        # Callers often pass lists; tuples keep the spec hashable and truly immutable.
        for field in ("boot", "disks", "nics"):
            object.__setattr__(self, field, tuple(getattr(self, field)))

    def _check_boot(self) -> None:
        if self.kernel is None:
            require(
                self.initrd is None and self.cmdline is None,
                "An initrd or kernel command line needs a kernel.",
            )
            require(len(self.boot) > 0, "Choose at least one boot device.")
        else:
            check_absolute_path("Kernel", self.kernel)
            if self.initrd is not None:
                check_absolute_path("Initrd", self.initrd)
            if self.cmdline is not None:
                check_text("Kernel command line", self.cmdline)
        for device in self.boot:
            check_choice("Boot device", device, get_args(BootDevice))
        require(
            len(set(self.boot)) == len(self.boot),
            "Each boot device may appear only once.",
        )

    def _check_devices(self) -> None:
        for disk in self.disks:
            require(isinstance(disk, DiskSpec), "Disks must be DiskSpec values.")
        for nic in self.nics:
            require(isinstance(nic, NicSpec), "NICs must be NicSpec values.")
        targets = [disk.target_dev for disk in self.disks]
        require(len(set(targets)) == len(targets), "Two disks use the same target device.")
        macs = [nic.mac.lower() for nic in self.nics if nic.mac is not None]
        require(len(set(macs)) == len(macs), "Two NICs use the same MAC address.")


def _check_uuid(value: str) -> None:
    try:
        canonical = str(uuidlib.UUID(value))
    except (ValueError, AttributeError, TypeError):
        canonical = ""
    require(
        canonical == str(value).lower(),
        f"UUID must look like 12345678-1234-1234-1234-123456789abc; got {value!r}.",
    )
