"""Domain snapshot XML: built from a SnapshotSpec with ElementTree, and read back from libvirt's answer."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from kvmweb.virt.xml.safe import parse
from kvmweb.virt.xml.snapshot_spec import SnapshotSpec


@dataclass(frozen=True, slots=True)
class SnapshotDiskInfo:
    """One disk in a snapshot: ``kind`` is internal, external or no; ``path`` the overlay for external."""

    target_dev: str
    kind: str
    path: str | None


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    parent: str | None
    description: str
    state: str  # the domain's state when it was taken: running, paused, shutoff, disk-snapshot
    created: int  # seconds since the epoch
    memory: str  # internal, external or no
    disks: tuple[SnapshotDiskInfo, ...]

    @property
    def external(self) -> bool:
        return self.memory == "external" or any(disk.kind == "external" for disk in self.disks)


def build_snapshot_xml(spec: SnapshotSpec) -> str:
    """Return the ``<domainsnapshot>`` XML for ``spec``, indented, ending with a newline."""
    root = ET.Element("domainsnapshot")
    _text(root, "name", spec.name)
    if spec.description:
        _text(root, "description", spec.description)
    if spec.disk_only:
        ET.SubElement(root, "memory", snapshot="no")
        disks = ET.SubElement(root, "disks")
        for disk in spec.external_disks:
            element = ET.SubElement(disks, "disk", name=disk.target_dev, snapshot="external")
            ET.SubElement(element, "driver", type="qcow2")
            ET.SubElement(element, "source", file=disk.overlay_path)
        for target_dev in spec.skipped_disks:
            ET.SubElement(disks, "disk", name=target_dev, snapshot="no")
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def snapshot_info(xml: str) -> SnapshotInfo:
    """Read a snapshot's own facts (not the domain it embeds) from libvirt's XML."""
    root = parse(xml)
    parent = root.findtext("parent/name")
    memory = root.find("memory")
    disks = tuple(
        SnapshotDiskInfo(
            target_dev=disk.get("name", ""),
            kind=disk.get("snapshot", "internal"),
            path=_source_path(disk),
        )
        for disk in root.findall("disks/disk")
    )
    return SnapshotInfo(
        name=root.findtext("name") or "",
        parent=parent or None,
        description=root.findtext("description") or "",
        state=root.findtext("state") or "",
        created=int(root.findtext("creationTime") or 0),
        memory=memory.get("snapshot", "no") if memory is not None else "no",
        disks=disks,
    )


def _source_path(disk: ET.Element) -> str | None:
    source = disk.find("source")
    if source is None:
        return None
    return source.get("file") or source.get("dev")


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element
