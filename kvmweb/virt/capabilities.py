"""Read a host's capabilities XML into typed values (pure parsing, no libvirt calls)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from kvmweb.virt.types import GuestCapability, NumaCell, PageCount, SecurityModel
from kvmweb.virt.units import attribute_kib, element_kib
from kvmweb.virt.xml.safe import parse


@dataclass(frozen=True, slots=True)
class Capabilities:
    arch: str | None
    cpu_model: str | None
    cpu_vendor: str | None
    guests: tuple[GuestCapability, ...]
    numa_cells: tuple[NumaCell, ...]
    security_models: tuple[SecurityModel, ...]
    page_sizes_kib: tuple[int, ...] = ()

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
        page_sizes_kib=_page_sizes(root.findall("host/cpu/pages")),
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
    return NumaCell(
        id=int(element.get("id", "0")),
        memory_kib=element_kib(element.find("memory")),
        cpus=tuple(int(cpu.get("id", "0")) for cpu in element.findall("cpus/cpu")),
        pages=tuple(_page_counts(element.findall("pages"))),
    )


def _page_sizes(elements: list[ET.Element]) -> tuple[int, ...]:
    """The page sizes the host CPU offers (``<cpu><pages unit='KiB' size='2048'/>``), smallest first."""
    sizes = {attribute_kib(element, "size") for element in elements}
    return tuple(sorted(size for size in sizes if size is not None))


def _page_counts(elements: list[ET.Element]) -> list[PageCount]:
    """A cell's pages per size, ``<pages unit='KiB' size='2048'>512</pages>``.

    The count is the pool libvirt reports (hugepages reserved on the cell, or its whole memory in
    base pages), not how many are free right now.
    """
    counts = []
    for element in elements:
        size = attribute_kib(element, "size")
        text = (element.text or "").strip()
        if size is not None and text.isdigit():
            counts.append(PageCount(size_kib=size, count=int(text)))
    return counts


def _secmodel(element: ET.Element) -> SecurityModel:
    return SecurityModel(model=_text(element, "model") or "", doi=_text(element, "doi") or "")


def parse_firmwares(domain_capabilities: str, arch: str | None) -> tuple[str, ...]:
    """Firmware kinds from a host's domain capabilities; BIOS is built in on x86."""
    root = parse(domain_capabilities)
    values = [value.text or "" for value in root.findall("os/enum[@name='firmware']/value")]
    builtin = ["bios"] if arch in ("x86_64", "i686") else []
    return _unique([*builtin, *(value.strip() for value in values if value.strip())])
