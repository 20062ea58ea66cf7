"""libvirt's event numbers as the lower-case words a ``VirtEvent`` carries.

Lifecycle words are the constant's suffix in lower case (``VIR_DOMAIN_EVENT_STOPPED_DESTROYED``
gives ``stopped`` / ``destroyed``), like the state and reason words in ``states.py``. A number
this table does not know (a newer libvirt) becomes ``unknown`` rather than an error, so the
watcher still records that *something* happened and the reconcile reads the new state.
"""

from __future__ import annotations

import libvirt

UNKNOWN = "unknown"


def _named(prefix: str, suffixes: tuple[str, ...]) -> dict[int, str]:
    """``{VIR_<prefix>_<SUFFIX>: "suffix"}`` for each constant this libvirt binding defines."""
    table: dict[int, str] = {}
    for suffix in suffixes:
        value = getattr(libvirt, f"{prefix}_{suffix}", None)
        if isinstance(value, int):
            table.setdefault(value, suffix.lower())
    return table


DOMAIN_EVENTS: dict[int, str] = _named(
    "VIR_DOMAIN_EVENT",
    ("DEFINED", "UNDEFINED", "STARTED", "SUSPENDED", "RESUMED", "STOPPED", "SHUTDOWN", "PMSUSPENDED", "CRASHED"),
)

# Each event has its own detail numbering (VIR_DOMAIN_EVENT_<EVENT>_<DETAIL>).
DOMAIN_EVENT_DETAILS: dict[str, dict[int, str]] = {
    "defined": _named("VIR_DOMAIN_EVENT_DEFINED", ("ADDED", "UPDATED", "RENAMED", "FROM_SNAPSHOT")),
    "undefined": _named("VIR_DOMAIN_EVENT_UNDEFINED", ("REMOVED", "RENAMED")),
    "started": _named(
        "VIR_DOMAIN_EVENT_STARTED", ("BOOTED", "MIGRATED", "RESTORED", "FROM_SNAPSHOT", "WAKEUP", "RECREATED")
    ),
    "suspended": _named(
        "VIR_DOMAIN_EVENT_SUSPENDED",
        (
            "PAUSED",
            "MIGRATED",
            "IOERROR",
            "WATCHDOG",
            "RESTORED",
            "FROM_SNAPSHOT",
            "API_ERROR",
            "POSTCOPY",
            "POSTCOPY_FAILED",
        ),
    ),
    "resumed": _named(
        "VIR_DOMAIN_EVENT_RESUMED", ("UNPAUSED", "MIGRATED", "FROM_SNAPSHOT", "POSTCOPY", "POSTCOPY_FAILED")
    ),
    "stopped": _named(
        "VIR_DOMAIN_EVENT_STOPPED",
        ("SHUTDOWN", "DESTROYED", "CRASHED", "MIGRATED", "SAVED", "FAILED", "FROM_SNAPSHOT", "RECREATED"),
    ),
    "shutdown": _named("VIR_DOMAIN_EVENT_SHUTDOWN", ("FINISHED", "GUEST", "HOST")),
    "pmsuspended": _named("VIR_DOMAIN_EVENT_PMSUSPENDED", ("MEMORY", "DISK")),
    "crashed": _named("VIR_DOMAIN_EVENT_CRASHED", ("PANICKED", "CRASHLOADED")),
}

# Networks and pools have lifecycle events but no detail numbering (libvirt always sends 0).
NETWORK_EVENTS: dict[int, str] = _named("VIR_NETWORK_EVENT", ("DEFINED", "UNDEFINED", "STARTED", "STOPPED"))
POOL_EVENTS: dict[int, str] = _named(
    "VIR_STORAGE_POOL_EVENT", ("DEFINED", "UNDEFINED", "STARTED", "STOPPED", "CREATED", "DELETED")
)

METADATA_KINDS: dict[int, str] = _named("VIR_DOMAIN_METADATA", ("DESCRIPTION", "TITLE", "ELEMENT"))

CLOSE_REASONS: dict[int, str] = _named("VIR_CONNECT_CLOSE_REASON", ("ERROR", "EOF", "KEEPALIVE", "CLIENT"))


def domain_lifecycle(event: int, detail: int) -> tuple[str, str]:
    """``(event, detail)`` words for a domain lifecycle event, e.g. ``("stopped", "destroyed")``."""
    name = DOMAIN_EVENTS.get(event, UNKNOWN)
    return name, DOMAIN_EVENT_DETAILS.get(name, {}).get(detail, UNKNOWN)


def network_lifecycle(event: int) -> str:
    return NETWORK_EVENTS.get(event, UNKNOWN)


def pool_lifecycle(event: int) -> str:
    return POOL_EVENTS.get(event, UNKNOWN)


def metadata_kind(kind: int) -> str:
    return METADATA_KINDS.get(kind, UNKNOWN)


def close_reason(reason: int) -> str:
    """Why libvirt closed a connection: ``error``, ``eof``, ``keepalive`` or ``client``."""
    return CLOSE_REASONS.get(reason, UNKNOWN)
