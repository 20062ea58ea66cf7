"""Sizes in libvirt XML: a number plus a ``unit`` attribute, turned into bytes or KiB."""

from __future__ import annotations

import xml.etree.ElementTree as ET

BYTES_PER_UNIT = {
    "b": 1,
    "bytes": 1,
    "kb": 1000,
    "k": 1024,
    "kib": 1024,
    "mb": 1000**2,
    "m": 1024**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "g": 1024**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "t": 1024**4,
    "tib": 1024**4,
    "pb": 1000**5,
    "p": 1024**5,
    "pib": 1024**5,
}


def size_in_bytes(text: str | None, unit: str | None, *, default_unit: str) -> int | None:
    """``text`` in ``unit`` (or ``default_unit``) as bytes; None when either is not understood."""
    factor = BYTES_PER_UNIT.get((unit or default_unit).lower())
    value = (text or "").strip()
    if factor is None or not value.isdigit():
        return None
    return int(value) * factor


def element_bytes(element: ET.Element | None, *, default_unit: str = "bytes") -> int | None:
    """An element like ``<capacity unit='bytes'>1024</capacity>`` as bytes."""
    if element is None:
        return None
    return size_in_bytes(element.text, element.get("unit"), default_unit=default_unit)


def element_kib(element: ET.Element | None, *, default_unit: str = "KiB") -> int | None:
    """An element like ``<memory unit='KiB'>1024</memory>`` as KiB (rounded down)."""
    size = element_bytes(element, default_unit=default_unit)
    return None if size is None else size // 1024


def attribute_kib(element: ET.Element, attribute: str, *, default_unit: str = "KiB") -> int | None:
    """An attribute size such as ``<pages unit='KiB' size='2048'/>`` as KiB."""
    size = size_in_bytes(element.get(attribute), element.get("unit"), default_unit=default_unit)
    return None if size is None else size // 1024
