"""virsh, for the few lab operations kvmweb.virt does not offer (volumes, agent, migration)."""

from __future__ import annotations

import subprocess

from tests.lab.errors import LabError


def virsh(uri: str, *args: str, timeout: float = 60.0) -> str:
    """Run ``virsh -c uri args...`` with a deadline; return stdout, raise LabError on failure."""
    cmd = ["virsh", "-q", "-c", uri, *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(cmd)} did not finish within {timeout:g} s") from exc
    if done.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed (rc={done.returncode}): {done.stderr.strip()}")
    return done.stdout
