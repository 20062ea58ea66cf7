"""The safe parser refuses DTDs and entities outright, and explains malformed XML."""

from __future__ import annotations

import pytest

from kvmweb.virt import InvalidArgument, UnsafeXML
from kvmweb.virt.xml import parse_xml

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<domain><name>&lol9;</name></domain>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<domain><description>&secret;</description></domain>
"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE domain SYSTEM "http://127.0.0.1:9/evil.dtd">
<domain><name>x</name></domain>
"""

PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>
<domain/>
"""


@pytest.mark.parametrize(
    "payload",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity"],
)
def test_entity_and_dtd_payloads_are_refused_as_unsafe(payload: str) -> None:
    with pytest.raises(UnsafeXML) as caught:
        parse_xml(payload)

    assert caught.value.message.startswith("The XML was refused because it declares a DTD or entities")
    assert caught.value.transient is False


def test_unsafe_xml_is_a_kind_of_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        parse_xml(BILLION_LAUGHS.encode())


def test_malformed_xml_reports_line_and_column() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_xml("<domain>\n  <name>x</name>\n  <vcpu>1</vcpus>\n</domain>")

    assert not isinstance(caught.value, UnsafeXML)
    assert caught.value.message == "The XML is not well formed at line 3, column 12."
    assert "mismatched tag" in caught.value.raw


def test_plain_document_with_encoding_declaration_parses_from_bytes() -> None:
    root = parse_xml(
        "<?xml version='1.0' encoding='UTF-8'?><domain type='kvm'><name>caf\u00e9</name></domain>".encode()
    )

    assert root.tag == "domain"
    assert root.get("type") == "kvm"
    assert root.findtext("name") == "caf\u00e9"
