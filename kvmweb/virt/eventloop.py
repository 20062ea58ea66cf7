"""libvirt's default event loop, run in a daemon thread.

Keepalive pings and close callbacks only happen while an event loop runs, so a process that wants
dead hosts noticed calls ``register_event_loop()`` before it opens any connection.
"""

from __future__ import annotations

import logging
import os
import threading

import libvirt

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_registered = False
_runner: threading.Thread | None = None
_runner_pid: int | None = None


def register_event_loop() -> threading.Thread:
    """Register libvirt's default event loop once per process and keep it running."""
    global _registered, _runner, _runner_pid
    with _lock:
        if not _registered:
            libvirt.virEventRegisterDefaultImpl()
            _registered = True
        # A forked child inherits the registration but not the thread that ran it.
        if _runner is None or _runner_pid != os.getpid() or not _runner.is_alive():
            _runner = threading.Thread(target=_run, name="libvirt-event-loop", daemon=True)
            _runner.start()
            _runner_pid = os.getpid()
        return _runner


def event_loop_running() -> bool:
    with _lock:
        return _runner is not None and _runner_pid == os.getpid() and _runner.is_alive()


def _run() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError:
            # One failed iteration must not stop keepalives for every host in the process.
            logger.exception("libvirt event loop iteration failed")
