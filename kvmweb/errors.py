"""The project's own errors for refusals a user can act on (the adapter has its own for libvirt)."""

from collections.abc import Mapping


class KvmwebError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message: str, *, details: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})


class Conflict(KvmwebError):
    code = "conflict"
    http_status = 409


class Invalid(KvmwebError):
    code = "invalid"
    http_status = 400


class NotVisible(KvmwebError):
    """The object doesn't exist, or the user may not know that it does."""

    code = "not_found"
    http_status = 404


class Forbidden(KvmwebError):
    code = "permission_denied"
    http_status = 403
