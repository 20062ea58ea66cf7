"""libvirt test-driver node files: a simulated host with the guests a test asks for."""

from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
# libvirt's virDomainState numbers, as <test:runstate> wants them.
RUNSTATE = {"running": 1, "blocked": 2, "paused": 3, "shutdown": 4, "shutoff": 5, "crashed": 6, "pmsuspended": 7}


@dataclass(frozen=True)
class Guest:
    name: str
    uuid: str
    state: str = "running"
    vcpus: int = 1
    memory_kib: int = 196608


def write_node(path: Path, guests: list[Guest]) -> str:
    """Write a node file and return the URI that opens it."""
    ET.register_namespace("test", TEST_NS)
    node = ET.Element("node")
    cpu = ET.SubElement(node, "cpu")
    for tag, value in (("mhz", "2000"), ("model", "i686"), ("active", "4"), ("nodes", "1"), ("sockets", "1"),
                       ("cores", "4"), ("threads", "1")):  # fmt: skip
        ET.SubElement(cpu, tag).text = value
    ET.SubElement(node, "memory").text = "8388608"
    for guest in guests:
        domain = ET.SubElement(node, "domain", {"type": "test"})
        ET.SubElement(domain, "name").text = guest.name
        ET.SubElement(domain, "uuid").text = guest.uuid
        ET.SubElement(domain, "memory").text = str(guest.memory_kib)
        ET.SubElement(domain, "currentMemory").text = str(guest.memory_kib)
        ET.SubElement(domain, "vcpu").text = str(guest.vcpus)
        os_ = ET.SubElement(domain, "os")
        ET.SubElement(os_, "type").text = "hvm"
        ET.SubElement(domain, f"{{{TEST_NS}}}runstate").text = str(RUNSTATE[guest.state])
    ET.ElementTree(node).write(path, encoding="unicode")
    return f"test://{path.resolve()}"
