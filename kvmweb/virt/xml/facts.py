"""What the inventory reads out of libvirt's own XML (pure parsing through the defusedxml helper)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from kvmweb.virt.units import element_bytes, element_kib
from kvmweb.virt.xml.safe import parse


@dataclass(frozen=True, slots=True)
class DomainFacts:
    domain_type: str | None
    title: str | None
    description: str | None
    os_type: str | None
    arch: str | None
    vcpus: int | None
    memory_kib: int | None
    max_memory_kib: int | None
    security_label: str | None
    security_model: str | None


@dataclass(frozen=True, slots=True)
class NetworkFacts:
    bridge: str | None
    forward_mode: str


@dataclass(frozen=True, slots=True)
class PoolFacts:
    type: str | None
    capacity: int | None
    allocation: int | None
    available: int | None
    target_path: str | None


@dataclass(frozen=True, slots=True)
class VolumeFacts:
    name: str
    key: str | None
    path: str | None
    type: str | None
    format: str | None
    capacity: int | None
    allocation: int | None
    backing_path: str | None
    encryption: str | None  # <encryption format>: "luks" (or a legacy "qcow"); None for a plain volume
    # The passphrase secret it names: libvirt finds it by the volume path; None when the host has none.
    secret_uuid: str | None


def domain_facts(xml: str) -> DomainFacts:
    root = parse(xml)
    os_type = root.find("os/type")
    max_memory_kib = element_kib(root.find("memory"))
    current = root.find("currentMemory")
    label, model = _security_label(root)
    return DomainFacts(
        domain_type=root.get("type"),
        title=_text(root, "title"),
        description=_text(root, "description", strip=False),
        os_type=_text(root, "os/type"),
        arch=None if os_type is None else os_type.get("arch"),
        vcpus=_vcpus(root.find("vcpu")),
        # Without <currentMemory> the guest has all of <memory>.
        memory_kib=max_memory_kib if current is None else element_kib(current),
        max_memory_kib=max_memory_kib,
        security_label=label,
        security_model=model,
    )


def network_facts(xml: str) -> NetworkFacts:
    root = parse(xml)
    forward = root.find("forward")
    bridge = root.find("bridge")
    return NetworkFacts(
        bridge=None if bridge is None else (bridge.get("name") or None),
        # libvirt's default forward mode is nat; a network without <forward> is isolated.
        forward_mode="isolated" if forward is None else forward.get("mode", "nat"),
    )


def pool_facts(xml: str) -> PoolFacts:
    root = parse(xml)
    return PoolFacts(
        type=root.get("type"),
        capacity=element_bytes(root.find("capacity")),
        allocation=element_bytes(root.find("allocation")),
        available=element_bytes(root.find("available")),
        target_path=_text(root, "target/path"),
    )


def volume_facts(xml: str) -> VolumeFacts:
    root = parse(xml)
    volume_format = root.find("target/format")
    encryption = root.find("target/encryption")
    secret = None if encryption is None else encryption.find("secret")
    return VolumeFacts(
        name=_text(root, "name") or "",
        key=_text(root, "key"),
        path=_text(root, "target/path"),
        type=root.get("type"),
        format=None if volume_format is None else volume_format.get("type"),
        capacity=element_bytes(root.find("capacity")),
        allocation=element_bytes(root.find("allocation")),
        backing_path=_text(root, "backingStore/path"),
        encryption=None if encryption is None else encryption.get("format", "default"),
        secret_uuid=None if secret is None else (secret.get("uuid") or None),
    )


def _text(element: ET.Element, path: str, *, strip: bool = True) -> str | None:
    found = element.find(path)
    if found is None or found.text is None or not found.text.strip():
        return None
    return found.text.strip() if strip else found.text


def _vcpus(element: ET.Element | None) -> int | None:
    if element is None:
        return None
    text = element.get("current") or (element.text or "").strip()
    return int(text) if text.isdigit() else None


def _security_label(root: ET.Element) -> tuple[str | None, str | None]:
    """``(label, model)`` of the first domain-level ``<seclabel>`` carrying a label or imagelabel.

    A guest confined by several drivers (selinux and dac, say) lists one ``<seclabel>`` each, the
    host's primary driver first. Without any label, the first model is still reported.
    """
    seclabels = root.findall("seclabel")
    for seclabel in seclabels:
        label = _text(seclabel, "label") or _text(seclabel, "imagelabel")
        if label is not None:
            return label, seclabel.get("model")
    if seclabels:
        return None, seclabels[0].get("model")
    return None, None
