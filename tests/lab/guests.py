"""The tiny lab guest: its definition (through kvmweb.virt's typed XML builder), lifecycle and checks.

Also a command line, used by ``scripts/lab/lab.sh demo``::

    .venv/bin/python -m tests.lab.guests [--host lab|h1|h2] demo
    .venv/bin/python -m tests.lab.guests [--host ...] define NAME [--no-disk] [--start]
    .venv/bin/python -m tests.lab.guests [--host ...] remove NAME
    .venv/bin/python -m tests.lab.guests [--host ...] xml NAME [--no-disk]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import sys
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvmweb.virt import (
    InvalidOperation,
    NotFound,
    define_domain,
    destroy_domain,
    domain_state,
    list_domains,
    start_domain,
    undefine_domain,
)
from kvmweb.virt.xml import DiskSpec, DomainSpec, NicSpec, SerialSpec, VncSpec, build_domain_xml
from tests.lab.errors import GuestBootTimeout, LabError
from tests.lab.hosts import LabHost, describe_lab, describe_two_hosts
from tests.lab.virsh import virsh

# What the guest's init prints on its serial console once qemu-ga runs (scripts/lab/guest/rc.sh).
MARKER = "KVMWEB-LAB-GUEST-BOOTED"
# Paths as every lab daemon sees them (the migration hosts bind their own copies there).
BOOT_DIR = "/var/lib/libvirt/boot/kvmweb-lab"
POOL = "kvmweb-lab"
LOG_DIR = "/var/log/libvirt/qemu"
VNC_DIR = "/run/kvmweb-lab/vnc"
MEMORY_MIB = 192
DATA_DISK_MIB = 64
DEMO_RUNNING = "demo-running"
DEMO_OFF = "demo-off"

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


def data_volume_name(name: str) -> str:
    return f"{name}-data.qcow2"


def guest_spec(
    name: str,
    *,
    uuid: str | None = None,
    data_disk: bool = True,
    memory_mib: int = MEMORY_MIB,
    cmdline_extra: str | None = None,
    nics: tuple[NicSpec, ...] = (),
) -> DomainSpec:
    """The tiny guest: direct kernel boot under TCG, serial log, agent channel, VNC on a unix socket.

    ``nics``: its network interfaces (none by default); the guest takes a DHCP lease on each and
    prints its address on the serial console (tests/lab/network.py reads it).
    """
    cmdline = f"console=tty0 console=ttyS0,115200 kvmweb.name={name}"
    if cmdline_extra:
        cmdline = f"{cmdline} {cmdline_extra}"
    disks = (DiskSpec(pool=POOL, volume=data_volume_name(name), format="qcow2", target_dev="vda", bus="virtio"),)
    return DomainSpec(
        name=name,
        uuid=uuid,
        memory_mib=memory_mib,
        vcpus=1,
        domain_type="qemu",
        kernel=f"{BOOT_DIR}/vmlinuz",
        initrd=f"{BOOT_DIR}/initrd.gz",
        cmdline=cmdline,
        disks=disks if data_disk else (),
        nics=nics,
        graphics=VncSpec(socket=f"{VNC_DIR}/{name}.sock"),
        serial=SerialSpec(log_file=f"{LOG_DIR}/{name}-serial.log"),
        guest_agent=True,
        rng=True,
        balloon=True,
        description="kvmweb lab tiny guest (scripts/lab/build_guest.sh)",
    )


def _clean(text: str) -> str:
    return _ANSI.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


@dataclass
class Guest:
    """A lab guest on one lab host. ``wait_for_marker`` only looks at output since the last ``start``."""

    host: LabHost
    name: str
    uuid: str
    data_disk: bool = True
    _mark: int = field(default=0, repr=False)

    # -- where things are, seen from the main namespace ------------------------------------
    @property
    def serial_log(self) -> Path:
        return self.host.host_path(f"{LOG_DIR}/{self.name}-serial.log")

    @property
    def vnc_socket(self) -> Path:
        return self.host.host_path(f"{VNC_DIR}/{self.name}.sock")

    @property
    def vnc_socket_in_host(self) -> str:
        """The socket path as libvirt reports it in the domain XML."""
        return f"{VNC_DIR}/{self.name}.sock"

    @property
    def data_volume(self) -> str | None:
        return data_volume_name(self.name) if self.data_disk else None

    # -- lifecycle --------------------------------------------------------------------------
    def state(self) -> str:
        return domain_state(self.host.target, self.uuid).state

    def is_running(self) -> bool:
        return self.state() == "running"

    def start(self) -> None:
        self.mark_log()
        start_domain(self.host.target, self.uuid)

    def destroy(self) -> None:
        with contextlib.suppress(InvalidOperation):  # already shut off
            destroy_domain(self.host.target, self.uuid)

    def shutdown(self, mode: str = "acpi") -> None:
        """Ask for a graceful shutdown through ``mode``: acpi (power button) or agent (qemu-ga)."""
        virsh(self.host.uri, "shutdown", self.uuid, "--mode", mode, timeout=30)

    def wait_for_state(self, wanted: str, timeout: float = 30.0) -> float:
        """Wait until the domain is in state ``wanted`` (e.g. "shutoff"); return the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        state = self.state()
        while state != wanted:
            if time.monotonic() > deadline:
                raise LabError(
                    f"{self.name} on {self.host.name} is {state!r}, not {wanted!r}, after {timeout:g} s\n"
                    f"last serial lines:\n{self.serial_tail()}"
                )
            time.sleep(0.1)
            state = self.state()
        return time.monotonic() - start

    # -- serial console ---------------------------------------------------------------------
    def mark_log(self) -> None:
        """Remember the serial log's size: later waits only read what the guest prints after this."""
        try:
            self._mark = self.serial_log.stat().st_size
        except FileNotFoundError:
            self._mark = 0

    def serial_output(self) -> str:
        try:
            with self.serial_log.open("rb") as log:
                size = log.seek(0, 2)
                log.seek(self._mark if self._mark <= size else 0)
                return _clean(log.read().decode("utf-8", errors="replace"))
        except FileNotFoundError:
            return ""

    def serial_lines(self) -> list[str]:
        """The whole lines of `serial_output`: the last piece may be a line the guest is still writing."""
        return self.serial_output().split("\n")[:-1]

    def serial_tail(self, lines: int = 30) -> str:
        text = self.serial_output().rstrip("\n")
        if not text:
            return f"(nothing in {self.serial_log} since the guest was started)"
        return "\n".join(text.split("\n")[-lines:])

    def wait_for_marker(self, timeout: float = 60.0) -> str:
        """Wait until the guest prints its boot marker; return that line.

        Raises GuestBootTimeout (a test failure) with the last lines of the serial log.
        """
        deadline = time.monotonic() + timeout
        while True:
            for line in self.serial_lines():
                if line.startswith(MARKER):
                    return line.strip()
            if time.monotonic() > deadline:
                try:
                    state = self.state()
                except (NotFound, LabError) as exc:
                    state = f"unknown ({exc})"
                raise GuestBootTimeout(
                    f"guest {self.name} on {self.host.name} printed no {MARKER!r} within {timeout:g} s "
                    f"(state: {state}); last lines of {self.serial_log}:\n{self.serial_tail()}"
                )
            time.sleep(0.1)

    # -- guest agent ------------------------------------------------------------------------
    def agent(self, command: str, arguments: dict[str, Any] | None = None, *, timeout: int = 10) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        out = virsh(
            self.host.uri,
            "qemu-agent-command",
            self.uuid,
            json.dumps(request),
            "--timeout",
            str(timeout),
            timeout=timeout + 20,
        )
        return json.loads(out)["return"]

    def wait_for_agent(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.agent("guest-ping", timeout=5)
                return
            except LabError as exc:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"the guest agent of {self.name} did not answer within {timeout:g} s: {exc}"
                    ) from exc
                time.sleep(0.3)

    def run(self, path: str, *args: str, timeout: float = 20.0) -> tuple[int, str]:
        """Run a program in the guest through qemu-ga; return its exit code and stdout."""
        pid = self.agent("guest-exec", {"path": path, "arg": list(args), "capture-output": True})["pid"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.agent("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                out = base64.b64decode(status.get("out-data", "")).decode(errors="replace")
                return int(status.get("exitcode", -1)), out
            if time.monotonic() > deadline:
                raise LabError(f"{path} {' '.join(args)} did not finish in {self.name} within {timeout:g} s")
            time.sleep(0.1)

    def write_file(self, path: str, data: bytes) -> None:
        handle = self.agent("guest-file-open", {"path": path, "mode": "w"})
        try:
            self.agent("guest-file-write", {"handle": handle, "buf-b64": base64.b64encode(data).decode()})
        finally:
            self.agent("guest-file-close", {"handle": handle})

    def read_file(self, path: str) -> bytes:
        handle = self.agent("guest-file-open", {"path": path, "mode": "r"})
        try:
            chunks = []
            while True:
                part = self.agent("guest-file-read", {"handle": handle, "count": 65536})
                chunks.append(base64.b64decode(part.get("buf-b64", "")))
                if part.get("eof") or not part.get("count"):
                    break
        finally:
            self.agent("guest-file-close", {"handle": handle})
        return b"".join(chunks)

    def uptime(self) -> float:
        return float(self.read_file("/proc/uptime").split()[0])

    def on(self, host: LabHost) -> Guest:
        """The same guest, seen on another host (after a migration)."""
        moved = Guest(host=host, name=self.name, uuid=self.uuid, data_disk=self.data_disk)
        moved.mark_log()
        return moved


# -- names of test guests --------------------------------------------------------------------
_TEST_GUEST = re.compile(r"^it-[a-z0-9-]+-p(?P<pid>[0-9]+)$")


def unique_guest_name(base: str) -> str:
    """A guest name for tests, unique to this process: ``it-<base>-p<pid>``."""
    return f"it-{base}-p{os.getpid()}"


def remove_stale_test_guests(host: LabHost) -> list[str]:
    """Remove test guests left behind by test runs that no longer exist (killed, interrupted)."""
    removed = []
    for summary in list_domains(host.target):
        match = _TEST_GUEST.match(summary.name)
        if match and not Path(f"/proc/{match['pid']}").exists():
            remove_guest(host, summary.name)
            removed.append(summary.name)
    return removed


# -- hosts' objects ---------------------------------------------------------------------------
def find_uuid(host: LabHost, name: str) -> str | None:
    for summary in list_domains(host.target):
        if summary.name == name:
            return summary.uuid
    return None


def ensure_volume(host: LabHost, volume: str, size_mib: int = DATA_DISK_MIB) -> None:
    try:
        virsh(host.uri, "vol-info", volume, "--pool", POOL, timeout=30)
    except LabError:
        virsh(host.uri, "vol-create-as", POOL, volume, f"{size_mib}M", "--format", "qcow2", timeout=60)


def ensure_guest(
    host: LabHost,
    name: str,
    *,
    data_disk: bool = True,
    start: bool = True,
    wait: bool = True,
    timeout: float = 60.0,
    cmdline_extra: str | None = None,
    nics: tuple[NicSpec, ...] = (),
    memory_mib: int = MEMORY_MIB,
) -> Guest:
    """Define (or redefine) the guest ``name`` on ``host``; start it and wait for its marker if asked."""
    if data_disk:
        ensure_volume(host, data_volume_name(name))
    uuid = find_uuid(host, name) or str(uuidlib.uuid4())
    spec = guest_spec(
        name, uuid=uuid, data_disk=data_disk, cmdline_extra=cmdline_extra, nics=nics, memory_mib=memory_mib
    )
    summary = define_domain(host.target, build_domain_xml(spec))
    guest = Guest(host=host, name=name, uuid=summary.uuid, data_disk=data_disk)
    if start and not guest.is_running():
        guest.start()
        if wait:
            guest.wait_for_marker(timeout)
    return guest


def remove_guest(host: LabHost, name: str, *, delete_volume: bool = True) -> None:
    """Destroy and undefine the guest if it exists, and delete its data volume."""
    uuid = find_uuid(host, name)
    if uuid is not None:
        with contextlib.suppress(InvalidOperation, NotFound):
            destroy_domain(host.target, uuid)
        with contextlib.suppress(NotFound):
            undefine_domain(host.target, uuid)
    # A killed QEMU leaves its VNC socket file behind.
    host.host_path(f"{VNC_DIR}/{name}.sock").unlink(missing_ok=True)
    if delete_volume:
        with contextlib.suppress(LabError):  # no such volume
            virsh(host.uri, "vol-delete", data_volume_name(name), "--pool", POOL, timeout=30)


def migrate(guest: Guest, dest: LabHost, *, copy_storage: bool = False, timeout: float = 180.0) -> Guest:
    """Live peer-to-peer migration to ``dest`` (persistent there, undefined at the source)."""
    if not dest.tcp_uri:
        raise LabError(f"host {dest.name} takes no migrations (it has no TCP listener)")
    args = ["migrate", "--live", "--p2p", "--persistent", "--undefinesource"]
    if copy_storage:
        args.append("--copy-storage-all")
    args += [guest.uuid, dest.tcp_uri]
    virsh(guest.host.uri, *args, timeout=timeout)
    return guest.on(dest)


def ensure_demo(host: LabHost) -> tuple[Guest, Guest]:
    """The demo's two guests: ``demo-running`` (running) and ``demo-off`` (shut off)."""
    running = ensure_guest(host, DEMO_RUNNING, start=True, wait=True)
    off = ensure_guest(host, DEMO_OFF, start=False)
    if off.is_running():
        off.destroy()
        off.wait_for_state("shutoff")
    return running, off


# -- command line -----------------------------------------------------------------------------
def _host(name: str) -> LabHost:
    if name == "lab":
        return describe_lab()
    hosts = describe_two_hosts()
    return {"h1": hosts.h1, "h2": hosts.h2}[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.guests", description=__doc__.split("\n")[0])
    parser.add_argument("--host", choices=("lab", "h1", "h2"), default="lab", help="which lab host (default: lab)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="make sure demo-running runs and demo-off is shut off")
    define = sub.add_parser("define", help="define a tiny guest")
    define.add_argument("name")
    define.add_argument("--no-disk", action="store_true", help="without the qcow2 data disk")
    define.add_argument("--start", action="store_true", help="start it and wait for its boot marker")
    remove = sub.add_parser("remove", help="destroy and undefine a guest, delete its data volume")
    remove.add_argument("name")
    xml = sub.add_parser("xml", help="print a tiny guest's domain XML")
    xml.add_argument("name")
    xml.add_argument("--no-disk", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "xml":
        sys.stdout.write(build_domain_xml(guest_spec(args.name, data_disk=not args.no_disk)))
        return 0
    host = _host(args.host)
    if args.command == "demo":
        running, off = ensure_demo(host)
        for guest in (running, off):
            where = f"console {guest.vnc_socket}, serial {guest.serial_log}"
            print(f"{guest.name}: {guest.state()} (uuid {guest.uuid}, {where})")
    elif args.command == "define":
        guest = ensure_guest(host, args.name, data_disk=not args.no_disk, start=args.start)
        print(f"{guest.name}: {guest.state()} (uuid {guest.uuid})")
    elif args.command == "remove":
        remove_guest(host, args.name)
        print(f"{args.name}: removed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
