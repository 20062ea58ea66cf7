"""Start, stop and describe the lab hosts through scripts/lab/*.sh."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kvmweb.virt import HostTarget
from tests.lab.errors import LabError

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "lab"
LAB_SH = SCRIPTS / "lab.sh"
TWO_HOSTS_SH = SCRIPTS / "two_hosts.sh"
# A cold start may install Debian packages and download the guest's packages first.
START_TIMEOUT = float(os.environ.get("KVMWEB_LAB_START_TIMEOUT", "900"))
STOP_TIMEOUT = 180.0


@dataclass(frozen=True)
class LabHost:
    """One lab libvirtd as the main namespace sees it.

    ``paths`` maps a directory as the daemon (and its guests) see it to the same directory as
    seen from the main namespace: the two migration hosts have private mounts over
    /var/log/libvirt, /var/lib/libvirt, /run/libvirt and /run/kvmweb-lab/vnc.
    """

    name: str
    uri: str
    netns: str
    socket: str
    address: str | None = None
    tcp_uri: str | None = None
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> HostTarget:
        return HostTarget(uri=self.uri)

    @property
    def migration_address(self) -> str | None:
        return self.address

    def host_path(self, path: str) -> Path:
        """Where a path of this daemon's filesystem view is found from the main namespace."""
        for inside in sorted(self.paths, key=len, reverse=True):
            if path == inside or path.startswith(inside.rstrip("/") + "/"):
                return Path(self.paths[inside] + path[len(inside) :])
        return Path(path)

    @classmethod
    def from_json(cls, data: dict) -> LabHost:
        return cls(
            name=data["name"],
            uri=data["uri"],
            netns=data["netns"],
            socket=data["socket"],
            address=data.get("address"),
            tcp_uri=data.get("tcp_uri"),
            paths=dict(data.get("paths", {})),
        )


@dataclass(frozen=True)
class TwoHosts:
    """The two migration hosts: ``h1`` and ``h2``, each reachable over its own unix socket."""

    h1: LabHost
    h2: LabHost

    @property
    def uris(self) -> tuple[str, str]:
        return (self.h1.uri, self.h2.uri)

    @property
    def migration_addresses(self) -> tuple[str | None, str | None]:
        return (self.h1.address, self.h2.address)

    def __iter__(self) -> Iterator[LabHost]:
        return iter((self.h1, self.h2))


def _run(script: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = ["bash", str(script), *args]
    try:
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") if isinstance(exc.stdout, bytes) else (exc.stdout or "").encode()
        err = (exc.stderr or b"") if isinstance(exc.stderr, bytes) else (exc.stderr or "").encode()
        tail = (out + err).decode(errors="replace")[-4000:]
        raise LabError(f"{script.name} {' '.join(args)} did not finish within {timeout:g} s\n{tail}") from exc


def _checked(script: Path, *args: str, timeout: float) -> str:
    done = _run(script, *args, timeout=timeout)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-6000:]
        raise LabError(f"{script.name} {' '.join(args)} failed (rc={done.returncode}):\n{output}")
    return done.stdout


def lab_running() -> bool:
    return _run(LAB_SH, "status", timeout=60).returncode == 0


def describe_lab() -> LabHost:
    return LabHost.from_json(json.loads(_checked(LAB_SH, "describe", timeout=30)))


def start_lab() -> tuple[LabHost, bool]:
    """Start the lab host unless it runs; return it and whether this call started it."""
    if lab_running():
        return describe_lab(), False
    _checked(LAB_SH, "start", timeout=START_TIMEOUT)
    return describe_lab(), True


def stop_lab() -> None:
    _checked(LAB_SH, "stop", timeout=STOP_TIMEOUT)


def two_hosts_running() -> bool:
    return _run(TWO_HOSTS_SH, "status", timeout=60).returncode == 0


def describe_two_hosts() -> TwoHosts:
    data = json.loads(_checked(TWO_HOSTS_SH, "describe", timeout=30))
    h1, h2 = (LabHost.from_json(host) for host in data["hosts"])
    return TwoHosts(h1=h1, h2=h2)


def start_two_hosts() -> tuple[TwoHosts, bool]:
    """Start the two migration hosts unless they run; return them and whether this call started them."""
    if two_hosts_running():
        return describe_two_hosts(), False
    _checked(TWO_HOSTS_SH, "start", timeout=START_TIMEOUT)
    return describe_two_hosts(), True


def stop_two_hosts() -> None:
    _checked(TWO_HOSTS_SH, "stop", timeout=STOP_TIMEOUT)
