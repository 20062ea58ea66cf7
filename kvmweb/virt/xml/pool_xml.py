"""Turn a PoolSpec into libvirt storage pool XML with ElementTree (never string formatting)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from kvmweb.virt.xml.pool_spec import PoolSpec

ISCSI_TARGET = "/dev/disk/by-path"


def build_pool_xml(spec: PoolSpec) -> str:
    """Return the libvirt XML for ``spec``, indented, ending with a newline."""
    root = ET.Element("pool", type=spec.type)
    ET.SubElement(root, "name").text = spec.name
    source = ET.SubElement(root, "source")
    for device in spec.source_devices:
        ET.SubElement(source, "device", path=device)
    if spec.source_host:
        ET.SubElement(source, "host", name=spec.source_host)
    if spec.source_dir:
        ET.SubElement(source, "dir", path=spec.source_dir)
    if spec.iqn:
        ET.SubElement(source, "device", path=spec.iqn)
    if spec.source_name:
        ET.SubElement(source, "name").text = spec.source_name
    if spec.type == "fs":
        ET.SubElement(source, "format", type=spec.source_format or "auto")
    elif spec.type == "netfs":
        ET.SubElement(source, "format", type=spec.source_format or "nfs")
    elif spec.type == "logical":
        ET.SubElement(source, "format", type="lvm2")
    if len(source) == 0:
        root.remove(source)
    target_path = ISCSI_TARGET if spec.type == "iscsi" else spec.target_path
    if spec.type == "logical" and target_path is None:
        target_path = f"/dev/{spec.source_name}"
    if target_path:
        target = ET.SubElement(root, "target")
        ET.SubElement(target, "path").text = target_path
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"
