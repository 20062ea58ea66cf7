"""Which host to talk to: a libvirt URI plus the credentials' file paths (never the secrets)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from kvmweb.virt.errors import InvalidArgument

SCHEMES = ("qemu", "qemu+ssh", "qemu+tls", "qemu+tcp", "qemu+unix", "test", "test+unix")
_SCHEME_HINT = ", ".join(f"{scheme}://" for scheme in SCHEMES[:-1]) + f" or {SCHEMES[-1]}://"


def validate_uri(uri: str) -> str:
    """Return ``uri`` unchanged if kvmweb can manage a host through it, else raise InvalidArgument."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgument(f"A libvirt URI is required, for example qemu:///system ({_SCHEME_HINT}).")
    if any(char.isspace() or ord(char) < 0x20 for char in uri):
        raise InvalidArgument("A libvirt URI cannot contain spaces or control characters.")
    if "://" not in uri:
        raise InvalidArgument(f"{uri!r} is not a libvirt URI: it should look like qemu:///system.")
    scheme = urlsplit(uri).scheme
    if scheme not in SCHEMES:
        shown = uri.split("://", 1)[0]
        raise InvalidArgument(f"Unsupported libvirt URI scheme {shown!r}: use {_SCHEME_HINT}.")
    return uri


@dataclass(frozen=True, slots=True)
class HostTarget:
    """A host as kvmweb connects to it. Two equal targets share one cached connection."""

    uri: str
    keyfile: str | None = None
    pkipath: str | None = None

    def __post_init__(self) -> None:
        validate_uri(self.uri)
        scheme = urlsplit(self.uri).scheme
        _check_credential_path("SSH key file", self.keyfile, scheme, "qemu+ssh")
        _check_credential_path("TLS certificate directory", self.pkipath, scheme, "qemu+tls")

    def effective_uri(self) -> str:
        """The URI handed to libvirt, carrying keyfile/pkipath as query parameters."""
        extra = {"keyfile": self.keyfile, "pkipath": self.pkipath}
        chosen = {name: value for name, value in extra.items() if value is not None}
        if not chosen:
            return self.uri
        parts = urlsplit(self.uri)
        # The target's own fields win over any copy already in the URI, so a parameter never
        # appears twice with two different values.
        kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in chosen]
        query = urlencode(kept + list(chosen.items()), quote_via=quote, safe="/")
        return urlunsplit(parts._replace(query=query))


def _check_credential_path(label: str, path: str | None, scheme: str, needed: str) -> None:
    if path is None:
        return
    if scheme != needed:
        raise InvalidArgument(f"A {label} only applies to {needed}:// URIs.")
    if not path.startswith("/") or any(ord(char) < 0x20 for char in path):
        raise InvalidArgument(f"The {label} must be an absolute path; got {path!r}.")
