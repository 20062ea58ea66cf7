"""Read a host's capabilities XML into typed values (pure parsing, no libvirt calls)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from kvmweb.virt.types import GuestCapability, NumaCell, SecurityModel
from kvmweb.virt.xml.safe import parse

_BYTES_PER_UNIT = {
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
}


@dataclass(frozen=True, slots=True)
class Capabilities:
    arch: str | None
    cpu_model: str | None
    cpu_vendor: str | None
    guests: tuple[GuestCapability, ...]
    numa_cells: tuple[NumaCell, ...]
    security_models: tuple[SecurityModel, ...]

    @property
    def virt_types(self) -> tuple[str, ...]:
        return tuple(sorted({kind for guest in self.guests for kind in guest.domain_types}))


def parse_capabilities(text: str) -> Capabilities:
    root = parse(text)
    return Capabilities(
        arch=_text(root, "host/cpu/arch"),
        cpu_model=_text(root, "host/cpu/model"),
        cpu_vendor=_text(root, "host/cpu/vendor"),
        guests=tuple(_guest(element) for element in root.findall("guest")),
        numa_cells=tuple(_cell(element) for element in root.findall("host/topology/cells/cell")),
        security_models=tuple(_secmodel(element) for element in root.findall("host/secmodel")),
    )


def _text(element: ET.Element, path: str) -> str | None:
    found = element.find(path)
    if found is None or found.text is None or not found.text.strip():
        return None
    return found.text.strip()


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _guest(element: ET.Element) -> GuestCapability:
    arch = element.find("arch")
    if arch is None:
        arch = ET.Element("arch")
    machines = [machine.text or "" for machine in arch.iter("machine")]
    return GuestCapability(
        os_type=_text(element, "os_type") or "",
        arch=arch.get("name", ""),
        domain_types=_unique([domain.get("type", "") for domain in arch.findall("domain")]),
        machines=_unique([name.strip() for name in machines if name.strip()]),
        emulator=_text(arch, "emulator") or "",
    )


def _cell(element: ET.Element) -> NumaCell:
    memory = element.find("memory")
    return NumaCell(
        id=int(element.get("id", "0")),
        memory_kib=None if memory is None else _kib(memory),
        cpus=tuple(int(cpu.get("id", "0")) for cpu in element.findall("cpus/cpu")),
    )


def _kib(element: ET.Element) -> int | None:
    unit = element.get("unit", "KiB").lower()
    text = (element.text or "").strip()
    if unit not in _BYTES_PER_UNIT or not text.isdigit():
        return None
    return int(text) * _BYTES_PER_UNIT[unit] // 1024


def _secmodel(element: ET.Element) -> SecurityModel:
    return SecurityModel(model=_text(element, "model") or "", doi=_text(element, "doi") or "")
