"""A VM's QEMU log and serial log, read from files on kvmweb's own machine.

libvirt has no API for a domain's log, so these are plain file reads (no libvirt call, so a page may
show them): only for hosts on this machine (a URI without a host name, or localhost), only under
the QEMU driver's log directory, and only the last `TAIL_BYTES`. For other hosts the view says
where the file is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from kvmweb import virt
from kvmweb.virt.xml import parse_xml
from vms.models import VirtualMachine

TAIL_BYTES = 256 * 1024
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
# Terminal escapes (colours, cursor moves) and other control characters a serial console writes.
CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")
LOCAL_NAMES = frozenset({"", "localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True, slots=True)
class LogView:
    """One log: `text` is its (last part of) content, or None with `reason` saying why not."""

    path: str
    text: str | None
    reason: str = ""
    title: str = "QEMU log"
    truncated: bool = False
    size: int | None = None


@dataclass(frozen=True, slots=True)
class _Place:
    directory: Path
    local: bool
    where: str  # the host, in words: "this machine", "kvm1"
    reason: str = ""  # set when no log of this host can be read at all


def _place(uri: str) -> _Place:
    parts = urlsplit(uri)
    driver = parts.scheme.split("+", 1)[0]
    hostname = parts.hostname or ""
    session = parts.path.rstrip("/") == "/session"
    directory = Path.home() / ".cache/libvirt/qemu/log" if session else Path(settings.KVMWEB_QEMU_LOG_DIR)
    local = hostname in LOCAL_NAMES
    where = "this machine" if local else hostname
    if driver == "test":
        reason = "This VM is simulated by libvirt's test driver: no QEMU runs it, so it has no log."
        return _Place(directory, False, where, reason)
    if driver != "qemu":
        reason = f"kvmweb reads logs of QEMU guests only; this host's driver is {driver}."
        return _Place(directory, False, where, reason)
    if not local and session:
        directory = Path("~/.cache/libvirt/qemu/log")  # the remote user's home, not ours
    return _Place(directory, local, where)


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except (ValueError, OSError):
        return False
    return True


def _read_tail(path: Path, limit: int) -> tuple[str, bool, int]:
    """The last `limit` bytes of `path` from a whole line on: (text, truncated, size)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        truncated = size > limit
        if truncated:
            handle.seek(size - limit)
        data = handle.read(limit)
    if truncated and b"\n" in data:
        data = data[data.index(b"\n") + 1 :]
    return CONTROL.sub("", data.decode("utf-8", errors="replace")), truncated, size


def _view(path: Path, place: _Place, *, title: str, missing: str) -> LogView:
    shown = str(path)
    if not place.local:
        reason = place.reason or (
            f"This log is on {place.where}, at {shown}. kvmweb reads logs only on its own machine: "
            f"read it there, e.g. ssh {place.where} sudo tail -n 200 {shown}"
        )
        return LogView(shown, None, reason, title=title)
    if not _inside(path, place.directory):
        reason = f"The log is at {shown}, outside {place.directory}: kvmweb reads only logs under that directory."
        return LogView(shown, None, reason, title=title)
    try:
        text, truncated, size = _read_tail(path, TAIL_BYTES)
    except FileNotFoundError:
        return LogView(shown, None, missing, title=title)
    except PermissionError:
        reason = f"kvmweb may not read {shown} (permission denied). Read it on the host, or let kvmweb's user read it."
        return LogView(shown, None, reason, title=title)
    except OSError as exc:
        return LogView(shown, None, f"{shown} could not be read: {exc.strerror or exc}.", title=title)
    return LogView(shown, text, "", title=title, truncated=truncated, size=size)


def qemu_log(vm: VirtualMachine) -> LogView:
    """The QEMU driver's log of `vm` (what QEMU printed, the command line it ran), as far as it can be read."""
    place = _place(vm.host.uri)
    name = vm.name
    path = place.directory / f"{name}.log"
    if place.reason:
        return LogView(str(path), None, place.reason)
    if not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        reason = (
            f"The log is {path} on {place.where}. kvmweb reads logs only of VMs named with letters, "
            "digits, dots, dashes and underscores, so that a name can never lead outside the log directory."
        )
        return LogView(str(path), None, reason)
    missing = f"No log yet at {path}: QEMU writes it when the VM first starts."
    return _view(path, place, title="QEMU log", missing=missing)


def serial_log_paths(xml: str) -> list[str]:
    """The files the domain's serial ports and consoles log to (<serial><log file=...>)."""
    try:
        root = parse_xml(xml)
    except virt.InvalidArgument:
        return []
    found: list[str] = []
    for device in [*root.findall("devices/serial"), *root.findall("devices/console")]:
        log = device.find("log")
        path = (log.get("file") or "").strip() if log is not None else ""
        if path and path not in found:
            found.append(path)
    return found


def serial_logs(vm: VirtualMachine) -> list[LogView]:
    """The serial logs named in the VM's last reported XML; only files under the log directory are read."""
    place = _place(vm.host.uri)
    views = []
    for raw in serial_log_paths(vm.xml or ""):
        path = Path(raw)
        title = "Serial log"
        if place.reason:
            views.append(LogView(raw, None, place.reason, title=title))
        else:
            missing = f"No serial log yet at {raw}: it appears when the VM runs."
            views.append(_view(path, place, title=title, missing=missing))
    return views


def vm_logs(vm: VirtualMachine) -> list[LogView]:
    """Everything the Logs tab shows: the QEMU log, then any serial logs."""
    return [qemu_log(vm), *serial_logs(vm)]
