"""Typed XML builders for libvirt objects and the safe parser for XML we did not write."""

from kvmweb.virt.xml.domain_edit import (
    DiskInfo,
    DomainDevices,
    NicInfo,
    boot_order_xml,
    clone_domain_xml,
    domain_devices,
    error_line,
)
from kvmweb.virt.xml.domain_spec import (
    DiskSpec,
    DomainSpec,
    NicSpec,
    SerialSpec,
    VncSpec,
)
from kvmweb.virt.xml.domain_xml import GUEST_AGENT_CHANNEL, build_domain_xml, disk_element, interface_element
from kvmweb.virt.xml.pool_spec import PoolSpec, check_pool_xml
from kvmweb.virt.xml.pool_xml import build_pool_xml
from kvmweb.virt.xml.safe import parse as parse_xml
from kvmweb.virt.xml.snapshot_spec import ExternalDisk, SnapshotSpec
from kvmweb.virt.xml.snapshot_xml import SnapshotDiskInfo, SnapshotInfo, build_snapshot_xml, snapshot_info
from kvmweb.virt.xml.volume_spec import VolumeSpec
from kvmweb.virt.xml.volume_xml import build_volume_xml

__all__ = (
    "GUEST_AGENT_CHANNEL",
    "DiskInfo",
    "DiskSpec",
    "DomainDevices",
    "DomainSpec",
    "ExternalDisk",
    "NicInfo",
    "NicSpec",
    "PoolSpec",
    "SerialSpec",
    "SnapshotDiskInfo",
    "SnapshotInfo",
    "SnapshotSpec",
    "VncSpec",
    "VolumeSpec",
    "boot_order_xml",
    "build_domain_xml",
    "build_pool_xml",
    "build_snapshot_xml",
    "build_volume_xml",
    "check_pool_xml",
    "clone_domain_xml",
    "disk_element",
    "domain_devices",
    "error_line",
    "interface_element",
    "parse_xml",
    "snapshot_info",
)
