"""A shared "users" lock per lab, so that concurrent test runs on one machine do not stop a lab
that another run still uses (scripts/lab/common.sh: lab_may_stop)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_DIR = Path(os.environ.get("KVMWEB_LAB_LOCK_DIR", "/run/lock"))


class LabUsers:
    """Hold a shared lock on ``<LOCK_DIR>/kvmweb-lab-<which>.users`` while this process uses the lab."""

    def __init__(self, which: str) -> None:
        self.path = LOCK_DIR / f"kvmweb-lab-{which}.users"
        self._fd: int | None = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def last_user(self) -> bool:
        """Release our share; True when no other process uses the lab any more."""
        self.release()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True
