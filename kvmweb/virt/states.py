"""libvirt's domain state and reason numbers, as the lower-case words the rest of kvmweb uses."""

from __future__ import annotations

import libvirt

from kvmweb.virt.types import DomainState

STATE_NAMES: dict[int, str] = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}

# Each state has its own reason numbering (VIR_DOMAIN_<STATE>_<REASON>); the words are the
# constant's suffix in lower case.
_REASON_NAMES: dict[int, dict[int, str]] = {
    libvirt.VIR_DOMAIN_RUNNING: {
        libvirt.VIR_DOMAIN_RUNNING_UNKNOWN: "unknown",
        libvirt.VIR_DOMAIN_RUNNING_BOOTED: "booted",
        libvirt.VIR_DOMAIN_RUNNING_MIGRATED: "migrated",
        libvirt.VIR_DOMAIN_RUNNING_RESTORED: "restored",
        libvirt.VIR_DOMAIN_RUNNING_FROM_SNAPSHOT: "from_snapshot",
        libvirt.VIR_DOMAIN_RUNNING_UNPAUSED: "unpaused",
        libvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED: "migration_canceled",
        libvirt.VIR_DOMAIN_RUNNING_SAVE_CANCELED: "save_canceled",
        libvirt.VIR_DOMAIN_RUNNING_WAKEUP: "wakeup",
        libvirt.VIR_DOMAIN_RUNNING_CRASHED: "crashed",
        libvirt.VIR_DOMAIN_RUNNING_POSTCOPY: "postcopy",
        libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED: "postcopy_failed",
    },
    libvirt.VIR_DOMAIN_PAUSED: {
        libvirt.VIR_DOMAIN_PAUSED_UNKNOWN: "unknown",
        libvirt.VIR_DOMAIN_PAUSED_USER: "user",
        libvirt.VIR_DOMAIN_PAUSED_MIGRATION: "migration",
        libvirt.VIR_DOMAIN_PAUSED_SAVE: "save",
        libvirt.VIR_DOMAIN_PAUSED_DUMP: "dump",
        libvirt.VIR_DOMAIN_PAUSED_IOERROR: "ioerror",
        libvirt.VIR_DOMAIN_PAUSED_WATCHDOG: "watchdog",
        libvirt.VIR_DOMAIN_PAUSED_FROM_SNAPSHOT: "from_snapshot",
        libvirt.VIR_DOMAIN_PAUSED_SHUTTING_DOWN: "shutting_down",
        libvirt.VIR_DOMAIN_PAUSED_SNAPSHOT: "snapshot",
        libvirt.VIR_DOMAIN_PAUSED_CRASHED: "crashed",
        libvirt.VIR_DOMAIN_PAUSED_STARTING_UP: "starting_up",
        libvirt.VIR_DOMAIN_PAUSED_POSTCOPY: "postcopy",
        libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED: "postcopy_failed",
    },
    libvirt.VIR_DOMAIN_SHUTDOWN: {
        libvirt.VIR_DOMAIN_SHUTDOWN_UNKNOWN: "unknown",
        libvirt.VIR_DOMAIN_SHUTDOWN_USER: "user",
    },
    libvirt.VIR_DOMAIN_SHUTOFF: {
        libvirt.VIR_DOMAIN_SHUTOFF_UNKNOWN: "unknown",
        libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "shutdown",
        libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "destroyed",
        libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "crashed",
        libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED: "migrated",
        libvirt.VIR_DOMAIN_SHUTOFF_SAVED: "saved",
        libvirt.VIR_DOMAIN_SHUTOFF_FAILED: "failed",
        libvirt.VIR_DOMAIN_SHUTOFF_FROM_SNAPSHOT: "from_snapshot",
        libvirt.VIR_DOMAIN_SHUTOFF_DAEMON: "daemon",
    },
    libvirt.VIR_DOMAIN_CRASHED: {
        libvirt.VIR_DOMAIN_CRASHED_UNKNOWN: "unknown",
        libvirt.VIR_DOMAIN_CRASHED_PANICKED: "panicked",
    },
}


def domain_state(state: int, reason: int) -> DomainState:
    """Name a (state, reason) pair; numbers from a newer libvirt become "unknown"."""
    return DomainState(
        state=STATE_NAMES.get(state, "nostate"),
        reason=_REASON_NAMES.get(state, {}).get(reason, "unknown"),
    )


POOL_STATE_NAMES: dict[int, str] = {
    libvirt.VIR_STORAGE_POOL_INACTIVE: "inactive",
    libvirt.VIR_STORAGE_POOL_BUILDING: "building",
    libvirt.VIR_STORAGE_POOL_RUNNING: "running",
    libvirt.VIR_STORAGE_POOL_DEGRADED: "degraded",
    libvirt.VIR_STORAGE_POOL_INACCESSIBLE: "inaccessible",
}


def pool_state(state: int) -> str:
    """Name a storage pool state; a number from a newer libvirt becomes "unknown"."""
    return POOL_STATE_NAMES.get(state, "unknown")
