"""Typed XML builders for libvirt objects and the safe parser for XML we did not write."""

from kvmweb.virt.xml.domain_spec import (
    DiskSpec,
    DomainSpec,
    NicSpec,
    SerialSpec,
    VncSpec,
)
from kvmweb.virt.xml.domain_xml import GUEST_AGENT_CHANNEL, build_domain_xml
from kvmweb.virt.xml.safe import parse as parse_xml

__all__ = (
    "GUEST_AGENT_CHANNEL",
    "DiskSpec",
    "DomainSpec",
    "NicSpec",
    "SerialSpec",
    "VncSpec",
    "build_domain_xml",
    "parse_xml",
)
