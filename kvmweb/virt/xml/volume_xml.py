"""Turn a VolumeSpec into libvirt storage volume XML with ElementTree (never string formatting)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from kvmweb.virt.xml.volume_spec import VolumeSpec

# qcow2 v3: needed for zero clusters, lazy refcounts and discard; every qemu since 1.1 reads it.
QCOW2_COMPAT = "1.1"


def build_volume_xml(spec: VolumeSpec) -> str:
    """Return the libvirt XML for ``spec``, indented, ending with a newline."""
    root = ET.Element("volume")
    _text(root, "name", spec.name)
    _text(root, "capacity", str(spec.capacity_bytes), unit="bytes")
    _text(root, "allocation", str(spec.allocation_bytes), unit="bytes")
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", type=spec.format)
    if spec.format == "qcow2":
        _text(target, "compat", QCOW2_COMPAT)
    if spec.encryption_secret is not None:
        encryption = ET.SubElement(target, "encryption", format="luks")
        ET.SubElement(encryption, "secret", type="passphrase", uuid=spec.encryption_secret)
    if spec.backing_path is not None and spec.backing_format is not None:
        backing = ET.SubElement(root, "backingStore")
        _text(backing, "path", spec.backing_path)
        ET.SubElement(backing, "format", type=spec.backing_format)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element
