"""libvirt secrets: the passphrases of encrypted (LUKS) volumes, held by the host, never by kvmweb.

A volume secret is defined persistent and private (``ephemeral='no' private='yes'``): libvirt keeps
it across restarts and never hands its value back through the API. Its usage is the volume's path,
so a host has at most one secret per volume path, and the volume's ``<encryption>`` names the
secret's UUID. Every function returns ``SecretRecord`` values; the value itself never leaves.

The test driver (``test:///default``) has no secret driver: every call there raises Unsupported.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import libvirt

from kvmweb.virt.connection import Connection, connect
from kvmweb.virt.errors import AlreadyExists
from kvmweb.virt.target import HostTarget
from kvmweb.virt.xml.checks import check_absolute_path, check_text, require
from kvmweb.virt.xml.safe import parse
from kvmweb.virt.xml.volume_spec import check_secret_uuid

Secret = Any  # a libvirt.virSecret; it never leaves this module

# A LUKS passphrase: qemu reads the secret's bytes as text, so it is text here too.
MIN_PASSPHRASE = 8
MAX_PASSPHRASE = 1024
# Written into the secrets kvmweb defines, so people reading `virsh secret-list` know whose they are.
DESCRIPTION = "kvmweb: passphrase of the encrypted volume {path}"

_USAGE_NAMES = {
    libvirt.VIR_SECRET_USAGE_TYPE_NONE: "none",
    libvirt.VIR_SECRET_USAGE_TYPE_VOLUME: "volume",
    libvirt.VIR_SECRET_USAGE_TYPE_CEPH: "ceph",
    libvirt.VIR_SECRET_USAGE_TYPE_ISCSI: "iscsi",
    libvirt.VIR_SECRET_USAGE_TYPE_TLS: "tls",
    libvirt.VIR_SECRET_USAGE_TYPE_VTPM: "vtpm",
}


@dataclass(frozen=True, slots=True)
class SecretRecord:
    """A secret as the host describes it (never its value). For a volume secret, ``usage_id`` is the path."""

    uuid: str
    usage_type: str
    usage_id: str | None
    description: str | None
    ephemeral: bool
    private: bool


def check_passphrase(value: object) -> str:
    """A passphrase from 8 to 1024 characters on one line; the message never repeats it."""
    require(isinstance(value, str), "The passphrase must be text.")
    text = str(value)
    require(
        MIN_PASSPHRASE <= len(text) <= MAX_PASSPHRASE,
        f"The passphrase must be {MIN_PASSPHRASE} to {MAX_PASSPHRASE} characters long.",
    )
    require(text.isprintable(), "The passphrase must be a single line without control characters.")
    return text


def build_volume_secret_xml(path: str, *, description: str | None = None) -> str:
    """The XML of a persistent, private secret whose usage is the volume at ``path``."""
    check_absolute_path("Volume path", path)
    text = DESCRIPTION.format(path=path) if description is None else description
    check_text("Secret description", text)
    root = ET.Element("secret", ephemeral="no", private="yes")
    ET.SubElement(root, "description").text = text
    usage = ET.SubElement(root, "usage", type="volume")
    ET.SubElement(usage, "volume").text = path
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def define_volume_secret(target: HostTarget, path: str, passphrase: str) -> SecretRecord:
    """Define the secret of the volume at ``path`` and give it ``passphrase``: both or neither.

    Refused (AlreadyExists) when the host already has a secret for that path: it may guard a volume
    kvmweb does not know, so it is never replaced here.
    """
    xml = build_volume_secret_xml(path)
    value = check_passphrase(passphrase).encode()
    with connect(target) as conn:
        existing = _by_usage(conn, path)
        if existing is not None:
            raise AlreadyExists(
                f"The host already has a secret ({existing.UUIDString()}) for a volume at {path}; "
                "remove it (virsh secret-undefine) if no volume uses it, or choose another name."
            )
        secret = conn.secretDefineXML(xml, 0)
        try:
            secret.setValue(value, 0)
            return _record(secret)
        except BaseException:
            _undefine_quietly(secret)
            raise


def volume_secret(target: HostTarget, path: str) -> SecretRecord | None:
    """The secret whose usage is the volume at ``path``, or None."""
    with connect(target) as conn:
        secret = _by_usage(conn, path)
        return None if secret is None else _record(secret)


def get_secret(target: HostTarget, uuid: str) -> SecretRecord | None:
    """The secret ``uuid``, or None when the host has none by that UUID."""
    check_secret_uuid("Secret UUID", uuid)
    with connect(target) as conn:
        secret = _by_uuid(conn, uuid)
        return None if secret is None else _record(secret)


def list_secrets(target: HostTarget) -> tuple[SecretRecord, ...]:
    """Every secret of the host (values never included), by usage then UUID."""
    with connect(target) as conn:
        records = [_record(secret) for secret in conn.listAllSecrets(0)]
    return tuple(sorted(records, key=lambda r: (r.usage_type, r.usage_id or "", r.uuid)))


def undefine_secret(target: HostTarget, uuid: str) -> bool:
    """Remove the secret ``uuid``; False when the host has none by that UUID."""
    check_secret_uuid("Secret UUID", uuid)
    with connect(target) as conn:
        secret = _by_uuid(conn, uuid)
        return secret is not None and _undefine(secret)


def undefine_volume_secret(target: HostTarget, path: str) -> str | None:
    """Remove the secret of the volume at ``path``; its UUID, or None when there was none."""
    with connect(target) as conn:
        secret = _by_usage(conn, path)
        if secret is None:
            return None
        uuid = str(secret.UUIDString())
        return uuid if _undefine(secret) else None


# Helpers


def _by_usage(conn: Connection, path: str) -> Secret | None:
    return _unless_missing(lambda: conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_VOLUME, path))


def _by_uuid(conn: Connection, uuid: str) -> Secret | None:
    return _unless_missing(lambda: conn.secretLookupByUUIDString(uuid))


def _unless_missing(lookup: Any) -> Secret | None:
    try:
        return lookup()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
            return None
        raise


def _undefine(secret: Secret) -> bool:
    try:
        secret.undefine()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
            return False
        raise
    return True


def _undefine_quietly(secret: Secret) -> None:
    # Called while another error propagates; that error is the one the caller must see.
    with suppress(libvirt.libvirtError):
        secret.undefine()


def _record(secret: Secret) -> SecretRecord:
    root = parse(secret.XMLDesc(0))
    usage_id = secret.usageID()
    return SecretRecord(
        uuid=str(secret.UUIDString()),
        usage_type=_USAGE_NAMES.get(secret.usageType(), str(secret.usageType())),
        usage_id=str(usage_id) if usage_id else None,
        description=(root.findtext("description") or "").strip() or None,
        ephemeral=root.get("ephemeral") == "yes",
        private=root.get("private") == "yes",
    )
