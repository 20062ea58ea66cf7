"""A typed description of a storage pool, checked when it is made, and the check for raw pool XML.

The forms cover the pool types people define by hand: ``dir`` (a directory), ``fs`` (a local
partition libvirt mounts), ``netfs`` (an NFS export libvirt mounts), ``logical`` (an LVM volume
group) and ``iscsi`` (an iSCSI target). Any other type is defined from XML the user writes, which
is parsed safely and checked for a name and a type before it reaches the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from kvmweb.virt.xml.checks import check_absolute_path, check_choice, check_pattern, check_text, require
from kvmweb.virt.xml.safe import parse

PoolType = Literal["dir", "fs", "netfs", "logical", "iscsi"]
FsFormat = Literal["auto", "ext4", "ext3", "xfs", "btrfs", "vfat"]
NetfsFormat = Literal["nfs", "cifs", "glusterfs"]

# Like a VM's name: it becomes a file name under /etc/libvirt/storage.
_POOL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
# A host name or an IPv4/IPv6 address; nothing that could carry a path or options.
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[?[0-9A-Fa-f:.]{2,45}\]?")
# An iSCSI qualified name (iqn.YYYY-MM.reverse.domain[:anything]) or an EUI name.
_IQN = re.compile(r"iqn\.\d{4}-\d{2}\.[A-Za-z0-9.-]+(:[A-Za-z0-9._:-]{1,200})?|eui\.[0-9A-Fa-f]{16}")
# An LVM volume group name.
_VG_NAME = re.compile(r"[A-Za-z0-9+_][A-Za-z0-9+_.-]{0,126}")
# Types the XML path accepts: the ones libvirt knows.
XML_POOL_TYPES = ("dir", "fs", "netfs", "logical", "disk", "iscsi", "iscsi-direct", "scsi", "mpath", "rbd",
                  "sheepdog", "gluster", "zfs", "vstorage")  # fmt: skip


def check_pool_name(value: object) -> None:
    require(isinstance(value, str), "Pool name must be text.")
    assert isinstance(value, str)
    check_pattern(
        "Pool name", value, _POOL_NAME, "may use letters, digits, '-', '_' and '.' (up to 64, not starting with '.')"
    )


def check_clean_path(field: str, value: object) -> None:
    """An absolute path without '..' or '.' parts, doubled slashes or a trailing slash."""
    require(isinstance(value, str) and bool(value), f"{field} is required.")
    assert isinstance(value, str)
    check_absolute_path(field, value, max_length=1024)
    require(value != "/", f"{field} cannot be the root directory.")
    parts = value.split("/")[1:]
    require(
        all(part not in ("", ".", "..") for part in parts),
        f"{field} must be a plain absolute path, without '..', '.' or empty parts; got {value!r}.",
    )


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A new pool. Which fields apply depends on ``type``; the others must stay empty.

    - dir: ``target_path``
    - fs: ``source_devices`` (one block device), ``source_format``, ``target_path`` (mount point)
    - netfs: ``source_host``, ``source_dir`` (the export), ``source_format`` (nfs), ``target_path``
    - logical: ``source_name`` (the volume group), optional ``source_devices`` (its physical volumes)
    - iscsi: ``source_host``, ``iqn`` (the target's name); volumes appear under /dev/disk/by-path
    """

    name: str
    type: PoolType
    target_path: str | None = None
    source_devices: tuple[str, ...] = ()
    source_format: str | None = None
    source_host: str | None = None
    source_dir: str | None = None
    source_name: str | None = None
    iqn: str | None = None

    def __post_init__(self) -> None:
        check_pool_name(self.name)
        check_choice("Pool type", self.type, get_args(PoolType))
        require(isinstance(self.source_devices, tuple), "Source devices must be a tuple of paths.")
        for device in self.source_devices:
            check_clean_path("Source device", device)
        {
            "dir": self._check_dir,
            "fs": self._check_fs,
            "netfs": self._check_netfs,
            "logical": self._check_logical,
            "iscsi": self._check_iscsi,
        }[self.type]()

    def _unused(self, *fields: str) -> None:
        for name in fields:
            value = getattr(self, name)
            require(not value, f"A {self.type} pool takes no {name.replace('_', ' ')}.")

    def _check_dir(self) -> None:
        check_clean_path("Target path", self.target_path)
        self._unused("source_devices", "source_format", "source_host", "source_dir", "source_name", "iqn")

    def _check_fs(self) -> None:
        require(len(self.source_devices) == 1, "An fs pool needs exactly one source device (e.g. /dev/sdb1).")
        check_choice("File system format", self.source_format or "auto", get_args(FsFormat))
        check_clean_path("Target path", self.target_path)
        self._unused("source_host", "source_dir", "source_name", "iqn")

    def _check_netfs(self) -> None:
        self._check_host()
        check_clean_path("Export path", self.source_dir)
        check_choice("Network file system", self.source_format or "nfs", get_args(NetfsFormat))
        check_clean_path("Target path", self.target_path)
        self._unused("source_devices", "source_name", "iqn")

    def _check_logical(self) -> None:
        require(isinstance(self.source_name, str) and bool(self.source_name), "A logical pool needs its volume group.")
        assert self.source_name is not None
        check_pattern("Volume group", self.source_name, _VG_NAME, "may use letters, digits, '+', '_', '.' and '-'")
        require(self.source_name not in (".", ".."), "Volume group cannot be '.' or '..'.")
        if self.target_path is not None:
            check_clean_path("Target path", self.target_path)
        self._unused("source_format", "source_host", "source_dir", "iqn")

    def _check_iscsi(self) -> None:
        self._check_host()
        require(isinstance(self.iqn, str) and bool(self.iqn), "An iscsi pool needs the target's IQN.")
        assert self.iqn is not None
        check_pattern("Target IQN", self.iqn, _IQN, "must look like iqn.2004-04.com.example:storage")
        self._unused("source_devices", "source_format", "source_dir", "source_name")
        require(self.target_path in (None, "/dev/disk/by-path"), "An iscsi pool's target is /dev/disk/by-path.")

    def _check_host(self) -> None:
        require(isinstance(self.source_host, str) and bool(self.source_host), f"A {self.type} pool needs a host.")
        assert self.source_host is not None
        check_pattern("Host", self.source_host, _HOST, "must be a host name or an IP address")


def check_pool_xml(xml: str) -> str:
    """Check pool XML a user typed: well formed, no DTD or entities, a ``<pool>`` with a known
    type and a valid name, and a clean target path when it has one. Returns the pool's name."""
    require(isinstance(xml, str) and bool(xml.strip()), "The pool XML is empty.")
    check_text("Pool XML", xml, max_length=65536, one_line=False)
    root = parse(xml)
    require(root.tag == "pool", f"The XML must describe a <pool>, not <{root.tag}>.")
    check_choice("Pool type", root.get("type"), XML_POOL_TYPES)
    name = root.findtext("name")
    require(name is not None, "The pool XML needs a <name>.")
    assert name is not None
    check_pool_name(name.strip())
    path = root.findtext("target/path")
    if path is not None:
        check_clean_path("Target path", path.strip())
    return name.strip()
