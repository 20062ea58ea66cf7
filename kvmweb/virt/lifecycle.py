"""Power and state actions on a domain: shut down, reboot, pause, managed save, keys, the guest agent.

``start_domain``, ``destroy_domain`` and ``set_autostart`` live in ``kvmweb.virt.domains``; starting a
domain that has a managed save image restores it from that image (libvirt does this by itself).

A ``mode`` says how the guest is asked to stop or restart:

- ``"acpi"``: the ACPI power button; the guest OS decides what to do with it.
- ``"agent"``: the QEMU guest agent inside the guest runs the shutdown or reboot.
- ``None``: the hypervisor's own choice. On QEMU that is the agent when it is connected, falling
  back to ACPI; drivers that know neither (the test driver) simply do it.
"""

from __future__ import annotations

import json
from typing import Literal

import libvirt
import libvirt_qemu

from kvmweb.virt import lookup
from kvmweb.virt.connection import connect
from kvmweb.virt.domains import require_active
from kvmweb.virt.errors import HostUnreachable, InvalidArgument, VirtError, translated
from kvmweb.virt.target import HostTarget

PowerMode = Literal["acpi", "agent"] | None

_SHUTDOWN_FLAGS: dict[str | None, int] = {
    None: 0,
    "acpi": libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN,
    "agent": libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT,
}
_REBOOT_FLAGS: dict[str | None, int] = {
    None: 0,
    "acpi": libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN,
    "agent": libvirt.VIR_DOMAIN_REBOOT_GUEST_AGENT,
}

# Linux input keycodes (linux/input-event-codes.h), sent in VIR_KEYCODE_SET_LINUX.
KEY_LEFTCTRL = 29
KEY_LEFTALT = 56
KEY_DELETE = 111


def _flags(table: dict[str | None, int], mode: str | None) -> int:
    try:
        return table[mode]
    except KeyError:
        raise InvalidArgument(f"Unknown mode {mode!r}: use acpi, agent, or none for the hypervisor's choice.") from None


def shutdown_domain(target: HostTarget, uuid: str, *, mode: PowerMode = None) -> None:
    """Ask the guest to power off. It returns at once; the guest may take a while, or ignore it."""
    flags = _flags(_SHUTDOWN_FLAGS, mode)
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        require_active(dom, True, "The virtual machine is not running.")
        dom.shutdownFlags(flags)


def reboot_domain(target: HostTarget, uuid: str, *, mode: PowerMode = None) -> None:
    """Ask the guest to restart (ACPI or the agent); it returns before the guest is back up."""
    flags = _flags(_REBOOT_FLAGS, mode)
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        require_active(dom, True, "The virtual machine is not running.")
        dom.reboot(flags)


def suspend_domain(target: HostTarget, uuid: str) -> None:
    """Pause the guest's virtual CPUs; its memory stays allocated on the host."""
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        require_active(dom, True, "The virtual machine is not running.")
        dom.suspend()


def resume_domain(target: HostTarget, uuid: str) -> None:
    """Let a paused guest's CPUs run again."""
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        require_active(dom, True, "The virtual machine is not running.")
        dom.resume()


def managed_save_domain(target: HostTarget, uuid: str) -> None:
    """Write the guest's memory to the host and stop it; the next start restores from that image."""
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        require_active(dom, True, "The virtual machine is not running.")
        dom.managedSave(0)


def managed_save_remove(target: HostTarget, uuid: str) -> None:
    """Throw away a managed save image, so the next start boots afresh (the saved state is lost)."""
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        dom.managedSaveRemove(0)


def send_ctrl_alt_del(target: HostTarget, uuid: str) -> None:
    """Press Ctrl+Alt+Del on the guest's keyboard."""
    keys = [KEY_LEFTCTRL, KEY_LEFTALT, KEY_DELETE]
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        require_active(dom, True, "The virtual machine is not running.")
        dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 0, keys, len(keys), 0)


def guest_agent_answers(target: HostTarget, uuid: str, timeout: int = 2) -> bool:
    """Whether the guest agent answers a ``guest-ping`` within ``timeout`` seconds.

    It asks the agent directly (``virDomainQemuAgentCommand``), which has its own timeout and
    needs nothing from the guest beyond a running agent; ``guestInfo`` or the agent's interface
    list would do more work and could wait on the agent's default timeout instead. Drivers that
    cannot relay agent commands (anything but QEMU, e.g. the test driver) have no agent to ask, so
    the answer is False there. Only an unreachable host is an error.
    """
    command = json.dumps({"execute": "guest-ping"})
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        if not dom.isActive():
            return False
        try:
            with translated():
                libvirt_qemu.qemuAgentCommand(dom, command, int(timeout), 0)
        except HostUnreachable:
            raise
        except VirtError:
            return False
    return True
