"""Golden-file tests for the volume XML builder, and the spec's refusals.

Set KVMWEB_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change, then review the
diff like any other code change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kvmweb.virt import errors
from kvmweb.virt.xml import VolumeSpec, build_volume_xml, parse_xml
from kvmweb.virt.xml.volume_spec import human_size

# A folder of their own: test_virt_domains.py checks every golden/*.xml against the domain schema.
GOLDEN = Path(__file__).parent / "golden" / "volumes"
GIB = 1024**3

CASES = {
    "volume_thin_qcow2.xml": VolumeSpec(name="web01.qcow2", capacity_bytes=20 * GIB),
    "volume_full_raw.xml": VolumeSpec(name="db_01.img", capacity_bytes=8 * GIB, format="raw", allocation="full"),
    "volume_linked_qcow2.xml": VolumeSpec(
        name="web02.qcow2",
        capacity_bytes=40 * GIB,
        backing_path="/var/lib/libvirt/images/debian-12.qcow2",
        backing_format="qcow2",
    ),
    "volume_encrypted_qcow2.xml": VolumeSpec(
        name="secret01.qcow2", capacity_bytes=10 * GIB, encryption_secret="930bd6d4-7894-4b4d-b97c-50d1da821991"
    ),
}


@pytest.mark.parametrize("golden_name", sorted(CASES))
def test_built_xml_matches_golden_file(golden_name: str) -> None:
    built = build_volume_xml(CASES[golden_name])
    golden = GOLDEN / golden_name
    if os.environ.get("KVMWEB_UPDATE_GOLDEN") == "1":
        golden.write_text(built, encoding="utf-8")
    assert built == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("allocation", "expected"),
    [("thin", "0"), ("metadata", "0"), ("full", str(3 * GIB))],
)
def test_only_full_allocation_asks_for_every_byte(allocation: str, expected: str) -> None:
    spec = VolumeSpec(name="v", capacity_bytes=3 * GIB, allocation=allocation)  # type: ignore[arg-type]

    root = parse_xml(build_volume_xml(spec))

    assert root.findtext("allocation") == expected
    assert root.findtext("capacity") == str(3 * GIB)


def test_qcow2_gets_compat_1_1_and_raw_gets_none() -> None:
    qcow2 = parse_xml(build_volume_xml(VolumeSpec(name="a", capacity_bytes=GIB)))
    raw = parse_xml(build_volume_xml(VolumeSpec(name="b", capacity_bytes=GIB, format="raw")))

    assert qcow2.findtext("target/compat") == "1.1"
    assert raw.find("target/compat") is None
    assert raw.find("backingStore") is None


def test_linked_volume_names_its_backing_file_and_format() -> None:
    root = parse_xml(build_volume_xml(CASES["volume_linked_qcow2.xml"]))

    assert root.findtext("backingStore/path") == "/var/lib/libvirt/images/debian-12.qcow2"
    backing_format = root.find("backingStore/format")
    assert backing_format is not None and backing_format.get("type") == "qcow2"


def test_smallest_and_largest_capacities_are_accepted() -> None:
    assert VolumeSpec(name="min", capacity_bytes=1024**2).capacity_bytes == 1024**2
    assert VolumeSpec(name="max", capacity_bytes=64 * 1024**4).capacity_bytes == 64 * 1024**4


def _volume(**overrides: object) -> VolumeSpec:
    fields: dict[str, object] = {"name": "disk.qcow2", "capacity_bytes": GIB, **overrides}
    return VolumeSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"capacity_bytes": 0}, "Capacity must be from 1 MiB to 64 TiB; got 0 bytes."),
        ({"capacity_bytes": -GIB}, "Capacity must be from 1 MiB to 64 TiB; got -1 GiB."),
        ({"capacity_bytes": 1024**2 - 1}, "Capacity must be from 1 MiB to 64 TiB; got 1023.9 KiB."),
        ({"capacity_bytes": 10**18}, "Capacity must be from 1 MiB to 64 TiB; got 888.1 PiB."),
        ({"capacity_bytes": "10G"}, "Capacity must be a whole number of bytes; got '10G'."),
        ({"capacity_bytes": 1.5 * GIB}, "Capacity must be a whole number of bytes; got 1610612736.0."),
        ({"capacity_bytes": True}, "Capacity must be a whole number of bytes; got True."),
        ({"format": "vmdk"}, "Volume format must be one of qcow2, raw; got 'vmdk'."),
        ({"allocation": "sparse"}, "Allocation must be one of thin, metadata, full; got 'sparse'."),
        (
            {"format": "raw", "allocation": "metadata"},
            "Metadata preallocation only applies to qcow2; a raw volume is thin or full.",
        ),
        (
            {"format": "raw", "backing_path": "/b.img", "backing_format": "raw"},
            "Only a qcow2 volume can have a backing file.",
        ),
        (
            {"backing_path": "base.qcow2", "backing_format": "qcow2"},
            "Backing file must be an absolute path; got 'base.qcow2'.",
        ),
        ({"backing_path": "/base.qcow2"}, "A backing file needs its format (qcow2 or raw)."),
        ({"backing_format": "qcow2"}, "A backing format needs a backing file."),
        (
            {"backing_path": "/base.vmdk", "backing_format": "vmdk"},
            "Backing format must be one of qcow2, raw; got 'vmdk'.",
        ),
        ({"backing_path": "/a\nb", "backing_format": "raw"}, "Backing file must be a single line."),
    ],
)
def test_invalid_volume_spec_is_refused_with_a_plain_message(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        _volume(**overrides)

    assert caught.value.message == message
    assert caught.value.transient is False


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", ".hidden", "-rf", "a/b", "../escape", "a b", "ünïcode", "x" * 256, "tab\tname", "a\x00b"],
)
def test_volume_name_that_is_not_a_plain_file_name_is_refused(name: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        _volume(name=name)

    assert caught.value.message.startswith("Volume name ")


@pytest.mark.parametrize("name", ["a", "_", "disk-1.qcow2", "WEB_01.img", "9", "x" * 255, "a..b"])
def test_plain_file_names_are_accepted(name: str) -> None:
    assert _volume(name=name).name == name


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (1024**2 - 1, "1023.9 KiB"),
        (5 * GIB + GIB // 3, "5.3 GiB"),
        (64 * 1024**4, "64 TiB"),
    ],
)
def test_sizes_are_written_for_people(size: int, text: str) -> None:
    assert human_size(size) == text
