"""Node files for libvirt's test driver: a whole fake host in one XML file, opened as test:///<path>.

The driver reads ``<domain>``, ``<network>`` and ``<pool>`` (with its ``<volume>`` children) from a
``<node>`` document; per-domain extras live in the ``test:`` namespace (``runstate`` is a
virDomainState number, ``transient`` and ``hasmanagedsave`` are flags).
"""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
ET.register_namespace("test", TEST_NS)

# virDomainState numbers (tests may not import libvirt itself).
RUNNING, PAUSED, SHUTDOWN, SHUTOFF, CRASHED = 1, 3, 4, 5, 6


@dataclass(frozen=True)
class NodeDomain:
    name: str
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    runstate: int = RUNNING
    transient: bool = False
    managed_save: bool = False
    memory_kib: int = 262144
    current_memory_kib: int | None = None
    vcpus: int = 1
    current_vcpus: int | None = None
    arch: str | None = None
    title: str | None = None
    description: str | None = None
    seclabels: tuple[tuple[str, str | None, str | None], ...] = ()  # (model, label, imagelabel)


@dataclass(frozen=True)
class NodeNetwork:
    name: str
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    bridge: str | None = None
    forward: str | None = None  # a mode, "" for <forward/> without one, None for no <forward>
    ip: str | None = None  # the host's address on a nat or routed network (a /24)


@dataclass(frozen=True)
class NodeVolume:
    name: str
    format: str
    capacity: int
    allocation: int
    backing: str | None = None


@dataclass(frozen=True)
class NodePool:
    name: str
    path: str
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    volumes: tuple[NodeVolume, ...] = ()


def node_xml(
    domains: tuple[NodeDomain, ...] = (),
    networks: tuple[NodeNetwork, ...] = (),
    pools: tuple[NodePool, ...] = (),
) -> str:
    node = ET.Element("node")
    for domain in domains:
        node.append(_domain(domain))
    for network in networks:
        node.append(_network(network))
    for pool in pools:
        node.append(_pool(pool))
    return ET.tostring(node, encoding="unicode")


def write_node(
    path: Path,
    *,
    domains: tuple[NodeDomain, ...] = (),
    networks: tuple[NodeNetwork, ...] = (),
    pools: tuple[NodePool, ...] = (),
) -> str:
    """Write the node file and return its test:// URI (test:/// plus the absolute path)."""
    path.write_text(node_xml(domains, networks, pools), encoding="utf-8")
    return f"test://{path}"


def _domain(spec: NodeDomain) -> ET.Element:
    domain = ET.Element("domain", type="test")
    ET.SubElement(domain, "name").text = spec.name
    ET.SubElement(domain, "uuid").text = spec.uuid
    if spec.title is not None:
        ET.SubElement(domain, "title").text = spec.title
    if spec.description is not None:
        ET.SubElement(domain, "description").text = spec.description
    ET.SubElement(domain, "memory", unit="KiB").text = str(spec.memory_kib)
    if spec.current_memory_kib is not None:
        ET.SubElement(domain, "currentMemory", unit="KiB").text = str(spec.current_memory_kib)
    vcpu = ET.SubElement(domain, "vcpu")
    vcpu.text = str(spec.vcpus)
    if spec.current_vcpus is not None:
        vcpu.set("current", str(spec.current_vcpus))
    os_element = ET.SubElement(domain, "os")
    os_type = ET.SubElement(os_element, "type")
    os_type.text = "hvm"
    if spec.arch is not None:
        os_type.set("arch", spec.arch)
    for model, label, imagelabel in spec.seclabels:
        kind = "static" if label is not None else "dynamic"
        seclabel = ET.SubElement(domain, "seclabel", type=kind, model=model, relabel="yes")
        if label is not None:
            ET.SubElement(seclabel, "label").text = label
        if imagelabel is not None:
            ET.SubElement(seclabel, "imagelabel").text = imagelabel
    ET.SubElement(domain, f"{{{TEST_NS}}}runstate").text = str(spec.runstate)
    if spec.transient:
        ET.SubElement(domain, f"{{{TEST_NS}}}transient")
    if spec.managed_save:
        ET.SubElement(domain, f"{{{TEST_NS}}}hasmanagedsave")
    return domain


def _network(spec: NodeNetwork) -> ET.Element:
    network = ET.Element("network")
    ET.SubElement(network, "name").text = spec.name
    ET.SubElement(network, "uuid").text = spec.uuid
    if spec.forward is not None:
        forward = ET.SubElement(network, "forward")
        if spec.forward:
            forward.set("mode", spec.forward)
    if spec.bridge is not None:
        ET.SubElement(network, "bridge", name=spec.bridge)
    if spec.ip is not None:
        ET.SubElement(network, "ip", address=spec.ip, netmask="255.255.255.0")
    return network


def _pool(spec: NodePool) -> ET.Element:
    pool = ET.Element("pool", type="dir")
    ET.SubElement(pool, "name").text = spec.name
    ET.SubElement(pool, "uuid").text = spec.uuid
    ET.SubElement(ET.SubElement(pool, "target"), "path").text = spec.path
    for volume in spec.volumes:
        pool.append(_volume(spec, volume))
    return pool


def _volume(pool: NodePool, spec: NodeVolume) -> ET.Element:
    volume = ET.Element("volume", type="file")
    ET.SubElement(volume, "name").text = spec.name
    ET.SubElement(volume, "key").text = f"{pool.path}/{spec.name}"
    ET.SubElement(volume, "capacity", unit="bytes").text = str(spec.capacity)
    ET.SubElement(volume, "allocation", unit="bytes").text = str(spec.allocation)
    target = ET.SubElement(volume, "target")
    ET.SubElement(target, "path").text = f"{pool.path}/{spec.name}"
    ET.SubElement(target, "format", type=spec.format)
    if spec.backing is not None:
        backing = ET.SubElement(volume, "backingStore")
        ET.SubElement(backing, "path").text = spec.backing
        ET.SubElement(backing, "format", type="raw")
    return volume
