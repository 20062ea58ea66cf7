"""The secrets adapter and the encrypted volume spec.

libvirt's test driver has no secret driver (every virSecret call answers VIR_ERR_NO_SUPPORT), so
here the secret XML, the checks and the translation of that refusal are tested; defining, setting,
finding and removing a real secret is tested on the lab (tests/integration/test_encrypted_volume_lab.py).
The test driver does keep a volume's <encryption>, so the volume side runs here for real.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from kvmweb import virt
from kvmweb.virt import errors, secrets, volumes
from kvmweb.virt.xml import DiskSpec, VolumeSpec, disk_element, parse_xml

POOL = "default-pool"
MIB = 1024**2
SECRET = "930bd6d4-7894-4b4d-b97c-50d1da821991"


@pytest.fixture
def scratch(target: virt.HostTarget) -> Iterator[list[str]]:
    """Paths of volumes a test made; deleted afterwards."""
    made: list[str] = []
    yield made
    for path in made:
        volumes.delete_volume(target, path)


def test_volume_secret_xml_is_private_persistent_and_names_the_volume_path() -> None:
    xml = secrets.build_volume_secret_xml("/var/lib/libvirt/images/db.qcow2")

    assert xml == (
        '<secret ephemeral="no" private="yes">\n'
        "  <description>kvmweb: passphrase of the encrypted volume /var/lib/libvirt/images/db.qcow2</description>\n"
        '  <usage type="volume">\n'
        "    <volume>/var/lib/libvirt/images/db.qcow2</volume>\n"
        "  </usage>\n"
        "</secret>\n"
    )


def test_markup_in_a_path_stays_text_in_the_secret_xml() -> None:
    root = parse_xml(secrets.build_volume_secret_xml("/pool/a</volume><x>.qcow2"))

    assert root.findtext("usage/volume") == "/pool/a</volume><x>.qcow2"
    assert root.find("usage/x") is None


@pytest.mark.parametrize("path", ["relative/disk.qcow2", "/pool/two\nlines.qcow2", ""])
def test_secret_xml_refuses_a_path_that_is_not_one_absolute_line(path: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="Volume path"):
        secrets.build_volume_secret_xml(path)


@pytest.mark.parametrize("passphrase", ["short", "x" * 1025, "tab\there-ok?", "two\nlines!!", 12345678])
def test_bad_passphrases_are_refused_without_repeating_them(passphrase: object) -> None:
    with pytest.raises(errors.InvalidArgument) as refused:
        secrets.check_passphrase(passphrase)

    assert str(passphrase) not in refused.value.message


def test_a_good_passphrase_passes_unchanged() -> None:
    assert secrets.check_passphrase("correct horse battery staple") == "correct horse battery staple"


@pytest.mark.parametrize("value", ["not-a-uuid", SECRET.upper(), SECRET.replace("-", ""), ""])
def test_secret_uuids_must_be_canonical(value: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="UUID"):
        secrets.check_secret_uuid("Secret UUID", value)


def test_the_test_driver_has_no_secrets_and_says_so_as_unsupported(target: virt.HostTarget) -> None:
    with pytest.raises(errors.Unsupported, match="not supported"):
        secrets.define_volume_secret(target, "/default-pool/enc.qcow2", "a long passphrase")
    with pytest.raises(errors.Unsupported):
        secrets.list_secrets(target)
    with pytest.raises(errors.Unsupported):
        secrets.undefine_secret(target, SECRET)


def test_a_bad_passphrase_is_refused_before_the_host_is_asked(target: virt.HostTarget) -> None:
    # InvalidArgument, not Unsupported: nothing reached the (secret-less) test driver.
    with pytest.raises(errors.InvalidArgument, match="8 to 1024 characters"):
        secrets.define_volume_secret(target, "/default-pool/enc.qcow2", "short")


# The volume side


def test_only_qcow2_volumes_are_encrypted() -> None:
    with pytest.raises(errors.InvalidArgument, match="Only a qcow2 volume is encrypted"):
        VolumeSpec(name="v.raw", capacity_bytes=MIB, format="raw", encryption_secret=SECRET)


def test_an_encrypted_volume_needs_a_canonical_secret_uuid_and_no_backing_file() -> None:
    with pytest.raises(errors.InvalidArgument, match="Encryption secret must be a UUID"):
        VolumeSpec(name="v", capacity_bytes=MIB, encryption_secret=SECRET.upper())
    with pytest.raises(errors.InvalidArgument, match="cannot have a backing file"):
        VolumeSpec(
            name="v",
            capacity_bytes=MIB,
            backing_path="/pool/base.qcow2",
            backing_format="qcow2",
            encryption_secret=SECRET,
        )


def test_encrypted_volume_on_the_host_names_its_secret(target: virt.HostTarget, scratch: list[str]) -> None:
    name = f"enc-{uuid.uuid4().hex[:8]}.qcow2"
    record = volumes.create_volume(
        target, POOL, VolumeSpec(name=name, capacity_bytes=16 * MIB, encryption_secret=SECRET)
    )
    scratch.append(record.path or "")
    plain = volumes.create_volume(target, POOL, VolumeSpec(name=f"plain-{name}", capacity_bytes=16 * MIB))
    scratch.append(plain.path or "")

    assert volumes.volume_encryption_secret(target, record.path or "") == SECRET
    assert volumes.volume_encryption_secret(target, plain.path or "") is None


def test_an_encrypted_volume_is_not_cloned_converted_or_used_as_a_backing_file(
    target: virt.HostTarget, scratch: list[str]
) -> None:
    name = f"enc-{uuid.uuid4().hex[:8]}.qcow2"
    record = volumes.create_volume(
        target, POOL, VolumeSpec(name=name, capacity_bytes=16 * MIB, encryption_secret=SECRET)
    )
    scratch.append(record.path or "")
    path = record.path or ""

    with pytest.raises(errors.InvalidOperation, match=r"encrypted \(LUKS\); kvmweb does not let it be copied"):
        volumes.clone_volume(target, POOL, path, f"copy-{name}", format="raw")
    with pytest.raises(errors.InvalidOperation, match="backing file of a linked volume"):
        volumes.create_linked_volume(target, POOL, path, f"overlay-{name}")
    assert volumes.volume_in_pool(target, POOL, f"copy-{name}") is None
    assert volumes.volume_in_pool(target, POOL, f"overlay-{name}") is None


# The disk side: a VM's disk on an encrypted volume names the same secret


def test_an_encrypted_disk_carries_its_secret_inside_its_source() -> None:
    disk = DiskSpec(source_file="/pool/vault.qcow2", target_dev="vdb", encryption_secret=SECRET)

    xml = ET.tostring(disk_element(disk), encoding="unicode")

    assert xml == (
        '<disk type="file" device="disk"><driver name="qemu" type="qcow2" /><source file="/pool/vault.qcow2">'
        f'<encryption format="luks"><secret type="passphrase" uuid="{SECRET}" /></encryption></source>'
        '<target dev="vdb" bus="virtio" /></disk>'
    )


def test_a_plain_disk_has_no_encryption() -> None:
    assert parse_xml(ET.tostring(disk_element(DiskSpec(source_file="/pool/a.qcow2")))).find(".//encryption") is None


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"format": "raw"}, "Only a qcow2 disk is encrypted"),
        ({"device": "cdrom", "bus": "sata", "target_dev": "sda"}, "Only a qcow2 disk is encrypted"),
        ({"encryption_secret": "nope"}, "Encryption secret must be a UUID"),
    ],
)
def test_encrypted_disks_are_qcow2_disks_with_a_uuid(fields: dict[str, object], words: str) -> None:
    chosen = {"source_file": "/pool/a.qcow2", "encryption_secret": SECRET, **fields}
    with pytest.raises(errors.InvalidArgument, match=words):
        DiskSpec(**chosen)  # type: ignore[arg-type]
