"""Parsing of XML we did not write ourselves: libvirt's answers and anything a user typed.

defusedxml refuses DTDs, entity declarations and external references, so billion-laughs and
external-entity payloads fail before any expansion happens. libvirt never emits a DTD, so refusing
them all costs nothing.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import cast

import defusedxml
import defusedxml.ElementTree as DefusedET

from kvmweb.virt.errors import InvalidArgument, UnsafeXML


def parse(text: str | bytes) -> ET.Element:
    """Parse untrusted XML into an ElementTree element, refusing DTDs and entities."""
    try:
        root = DefusedET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        message = "The XML was refused because it declares a DTD or entities, which kvmweb never accepts."
        raise UnsafeXML(message, raw=repr(exc)) from exc
    except ET.ParseError as exc:
        raise InvalidArgument(_malformed_message(exc), raw=str(exc)) from exc
    return cast(ET.Element, root)


def _malformed_message(exc: ET.ParseError) -> str:
    position: tuple[int, int] | None = getattr(exc, "position", None)
    if position is None:
        return f"The XML is not well formed ({exc})."
    line, column = position
    return f"The XML is not well formed at line {line}, column {column + 1}."
