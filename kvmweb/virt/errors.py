"""The adapter's exceptions, and the translation of libvirt's errors into them.

Callers never see ``libvirt.libvirtError``: they see a ``VirtError`` that says whether retrying can
help (``transient``) and carries a message a user can read, with libvirt's own text kept in ``raw``
for logs.
"""

# The class names are the project's vocabulary (see ARCHITECTURE.md), so no "Error" suffix.

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import libvirt

P = ParamSpec("P")
R = TypeVar("R")


class VirtError(Exception):
    """Anything that went wrong while talking to libvirt."""

    transient: bool = False

    def __init__(self, message: str, *, code: int | None = None, raw: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.raw = raw


class HostUnreachable(VirtError):
    transient = True


class OperationTimeout(VirtError):
    transient = True


class NotFound(VirtError):
    pass


class InvalidOperation(VirtError):
    pass


class AlreadyExists(VirtError):
    pass


class InvalidArgument(VirtError):
    pass


class UnsafeXML(InvalidArgument):
    pass


class AccessDenied(VirtError):
    pass


class Unsupported(VirtError):
    pass


_Rule = tuple[type[VirtError], str]

_BY_CODE: dict[int, _Rule] = {
    libvirt.VIR_ERR_NO_DOMAIN: (NotFound, "The virtual machine was not found."),
    libvirt.VIR_ERR_NO_NETWORK: (NotFound, "The network was not found."),
    libvirt.VIR_ERR_NO_STORAGE_POOL: (NotFound, "The storage pool was not found."),
    libvirt.VIR_ERR_NO_STORAGE_VOL: (NotFound, "The volume was not found."),
    libvirt.VIR_ERR_NO_SECRET: (NotFound, "The secret was not found."),
    libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT: (NotFound, "The snapshot was not found."),
    libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT: (NotFound, "The checkpoint was not found."),
    libvirt.VIR_ERR_NO_INTERFACE: (NotFound, "The host interface was not found."),
    libvirt.VIR_ERR_NO_NODE_DEVICE: (NotFound, "The host device was not found."),
    libvirt.VIR_ERR_NO_NWFILTER: (NotFound, "The network filter was not found."),
    libvirt.VIR_ERR_NO_NETWORK_PORT: (NotFound, "The network port was not found."),
    libvirt.VIR_ERR_NO_DOMAIN_METADATA: (
        NotFound,
        "The requested metadata was not found.",
    ),
    libvirt.VIR_ERR_OPERATION_INVALID: (
        InvalidOperation,
        "That action is not possible in the current state.",
    ),
    libvirt.VIR_ERR_NO_CONNECT: (HostUnreachable, "The host could not be reached."),
    libvirt.VIR_ERR_RPC: (HostUnreachable, "The connection to the host failed."),
    libvirt.VIR_ERR_OPERATION_TIMEOUT: (
        OperationTimeout,
        "The host did not answer in time.",
    ),
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE: (
        OperationTimeout,
        "The guest agent inside the virtual machine did not answer.",
    ),
    libvirt.VIR_ERR_DOM_EXIST: (
        AlreadyExists,
        "A virtual machine with that name already exists.",
    ),
    libvirt.VIR_ERR_NETWORK_EXIST: (
        AlreadyExists,
        "A network with that name already exists.",
    ),
    libvirt.VIR_ERR_STORAGE_VOL_EXIST: (
        AlreadyExists,
        "A volume with that name already exists.",
    ),
    libvirt.VIR_ERR_XML_ERROR: (InvalidArgument, "The definition is not valid."),
    libvirt.VIR_ERR_XML_DETAIL: (InvalidArgument, "The definition is not valid."),
    libvirt.VIR_ERR_XML_INVALID_SCHEMA: (
        InvalidArgument,
        "The definition does not match libvirt's schema.",
    ),
    libvirt.VIR_ERR_INVALID_ARG: (InvalidArgument, "A value was not accepted."),
    libvirt.VIR_ERR_INVALID_MAC: (InvalidArgument, "The MAC address is not valid."),
    libvirt.VIR_ERR_AUTH_FAILED: (AccessDenied, "The host refused the login."),
    libvirt.VIR_ERR_AUTH_CANCELLED: (AccessDenied, "The host refused the login."),
    libvirt.VIR_ERR_AUTH_UNAVAILABLE: (AccessDenied, "The host refused the login."),
    libvirt.VIR_ERR_ACCESS_DENIED: (AccessDenied, "The host denied access."),
    libvirt.VIR_ERR_OPERATION_DENIED: (AccessDenied, "The host denied access."),
    libvirt.VIR_ERR_NO_SUPPORT: (Unsupported, "The host does not support that action."),
    libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED: (
        Unsupported,
        "The host does not support that option.",
    ),
    libvirt.VIR_ERR_OPERATION_UNSUPPORTED: (
        Unsupported,
        "The host does not support that action.",
    ),
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED: (
        Unsupported,
        "The host does not support that configuration.",
    ),
}

# These codes cover any failed system call, local or remote, so only the connection layers' own
# reports of them mean the host is gone.
_CONNECTION_DOMAINS = frozenset(
    {
        libvirt.VIR_FROM_RPC,
        libvirt.VIR_FROM_REMOTE,
        libvirt.VIR_FROM_SSH,
        libvirt.VIR_FROM_LIBSSH,
    }
)
_MAYBE_CONNECTION_CODES = frozenset({libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INTERNAL_ERROR})
_CONNECTION_CLOSED_WORDS = (
    "connection closed",
    "client socket is closed",
    "end of file while",
)
_EXISTS_WORDS = ("already exists", "already defined")
_UNREACHABLE: _Rule = (HostUnreachable, "The host could not be reached.")
_EXISTS: _Rule = (AlreadyExists, "An object with that name or UUID already exists.")
_UNKNOWN: _Rule = (VirtError, "libvirt reported an error.")


def _rule_for(code: int | None, domain: int | None, raw: str) -> _Rule:
    lowered = raw.lower()
    if code in _MAYBE_CONNECTION_CODES and (
        domain in _CONNECTION_DOMAINS or any(word in lowered for word in _CONNECTION_CLOSED_WORDS)
    ):
        return _UNREACHABLE
    if code == libvirt.VIR_ERR_OPERATION_FAILED and any(w in lowered for w in _EXISTS_WORDS):
        return _EXISTS
    if code is None:
        return _UNKNOWN
    return _BY_CODE.get(code, _UNKNOWN)


def _plain_message(summary: str, raw: str) -> str:
    return f"{summary} ({raw})" if raw else summary


def translate(exc: libvirt.libvirtError) -> VirtError:
    """Return the project exception for a libvirt error (the caller raises it ``from exc``)."""
    code: int | None = exc.get_error_code()
    domain: int | None = exc.get_error_domain()
    raw = str(exc.get_error_message() or exc).strip()
    cls, summary = _rule_for(code, domain, raw)
    return cls(_plain_message(summary, raw), code=code, raw=raw)


@contextmanager
def translated() -> Iterator[None]:
    """Turn any ``libvirtError`` raised inside the block into a ``VirtError``."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise translate(exc) from exc


def translates(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of ``translated()`` for adapter functions."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with translated():
            return func(*args, **kwargs)

    return wrapper
