"""Cloud-init NoCloud seed images, built in memory: an ISO 9660 volume labelled ``cidata``.

cloud-init reads ``meta-data`` and ``user-data`` (and ``network-config`` when present) from any
attached disk with that label. Everything is serialized with json and email.mime, never by
pasting user text into a template: JSON is valid YAML, so a hostname or key can't inject config.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pycdlib

from kvmweb.errors import Invalid

_HOSTNAME = re.compile(r"(?=.{1,63}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?", re.IGNORECASE)
_USERNAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_SSH_KEY = re.compile(r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-\S+) [A-Za-z0-9+/=]+( [^\r\n]*)?")
MAX_USER_DATA = 64 * 1024
MAX_SSH_KEYS = 16


@dataclass(frozen=True, slots=True)
class CloudInit:
    """What the wizard asks for. Checked on creation, so a seed is built only from valid values."""

    instance_id: str
    hostname: str
    user: str = ""
    ssh_keys: tuple[str, ...] = ()
    user_data: str = ""

    def __post_init__(self) -> None:
        errors = {}
        if not _HOSTNAME.fullmatch(self.hostname):
            errors["hostname"] = "A hostname is letters, digits and '-', up to 63, not starting or ending with '-'."
        if self.user and not _USERNAME.fullmatch(self.user):
            errors["user"] = "A user name is lower-case letters, digits, '_' and '-', up to 32, starting with a letter."
        if self.ssh_keys and not self.user:
            errors["user"] = "Name the user the SSH keys are for."
        if len(self.ssh_keys) > MAX_SSH_KEYS or not all(_SSH_KEY.fullmatch(key) for key in self.ssh_keys):
            errors["ssh_keys"] = "Give OpenSSH public keys, one per line (ssh-ed25519 AAAA... comment)."
        if len(self.user_data.encode()) > MAX_USER_DATA:
            errors["user_data"] = f"User data is limited to {MAX_USER_DATA // 1024} KiB."
        if errors:
            raise Invalid("The cloud-init settings are not valid: " + " ".join(errors.values()), details=errors)


def parse_ssh_keys(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def meta_data(config: CloudInit) -> str:
    return json.dumps({"instance-id": config.instance_id, "local-hostname": config.hostname}, indent=2) + "\n"


def cloud_config(config: CloudInit) -> str:
    document: dict[str, object] = {"hostname": config.hostname, "preserve_hostname": False}
    if config.user:
        user: dict[str, object] = {"name": config.user, "shell": "/bin/bash", "sudo": "ALL=(ALL) NOPASSWD:ALL"}
        if config.ssh_keys:
            user["ssh_authorized_keys"] = list(config.ssh_keys)
        document["users"] = ["default", user]
    return "#cloud-config\n" + json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def user_data(config: CloudInit) -> str:
    """Our cloud-config, plus the user's own user-data as a second part that cloud-init merges."""
    ours = cloud_config(config)
    if not config.user_data.strip():
        return ours
    message = MIMEMultipart()
    message.attach(MIMEText(ours, "cloud-config"))
    subtype = "x-shellscript" if config.user_data.startswith("#!") else "cloud-config"
    message.attach(MIMEText(config.user_data, subtype))
    return message.as_string()


def seed_iso(config: CloudInit) -> bytes:
    """The NoCloud seed as ISO 9660 bytes (Joliet and Rock Ridge, so the file names survive)."""
    files = {"meta-data": meta_data(config), "user-data": user_data(config)}
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for index, (name, text) in enumerate(files.items()):
        data = text.encode()
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"/FILE{index};1",
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()
