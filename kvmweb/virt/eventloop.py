"""Which libvirt event loop this process runs, and libvirt's default one in a daemon thread.

Keepalive pings, close callbacks and events only happen while an event loop runs. A process
registers exactly one implementation, once: libvirt's default loop in a thread
(``register_event_loop()``, for web and worker processes), or the asyncio one
(``kvmweb.virt.events.use_asyncio_event_loop()``, for the events watcher). libvirt silently
ignores a second registration, which would leave one side's connections without keepalive or
events, so asking for the other kind raises ``EventLoopConflict`` instead.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import libvirt

logger = logging.getLogger(__name__)

DEFAULT = "default"
ASYNCIO = "asyncio"

_lock = threading.Lock()
_kind: str | None = None
_runner: threading.Thread | None = None
_runner_pid: int | None = None
# Set by kvmweb.virt.events once its asyncio implementation is registered: is its loop usable?
_asyncio_alive: Callable[[], bool] | None = None


class EventLoopConflict(RuntimeError):
    """The process already runs the other kind of libvirt event loop (a programming error)."""


def registered_kind() -> str | None:
    """``"default"``, ``"asyncio"`` or None: the libvirt event loop this process registered."""
    with _lock:
        return _kind


def claim(kind: str) -> None:
    """Record that this process uses ``kind``; the caller holds ``_lock`` and registers it."""
    global _kind
    if _kind not in (None, kind):
        other = "use_asyncio_event_loop()" if _kind == ASYNCIO else "register_event_loop()"
        raise EventLoopConflict(
            f"This process already registered libvirt's {_kind} event loop (through {other}); libvirt keeps "
            f"the first one and would silently ignore the {kind} one. Run the asyncio watcher in its own "
            "process, and call register_event_loop() only in web and worker processes."
        )
    _kind = kind


def register_event_loop() -> threading.Thread:
    """Register libvirt's default event loop once per process and keep it running."""
    global _kind, _runner, _runner_pid
    with _lock:
        if _kind != DEFAULT:
            claim(DEFAULT)  # raises if the process runs the asyncio loop
            try:
                libvirt.virEventRegisterDefaultImpl()
            except BaseException:
                _kind = None
                raise
        # A forked child inherits the registration but not the thread that ran it.
        if _runner is None or _runner_pid != os.getpid() or not _runner.is_alive():
            _runner = threading.Thread(target=_run, name="libvirt-event-loop", daemon=True)
            _runner.start()
            _runner_pid = os.getpid()
        return _runner


def event_loop_running() -> bool:
    """Whether a libvirt event loop serves this process (so keepalive can be switched on)."""
    with _lock:
        if _kind == ASYNCIO:
            return _asyncio_alive is not None and _asyncio_alive()
        return _runner is not None and _runner_pid == os.getpid() and _runner.is_alive()


def _run() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError:
            # One failed iteration must not stop keepalives for every host in the process.
            logger.exception("libvirt event loop iteration failed")
