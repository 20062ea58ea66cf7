"""The real KVM lab itself: a libvirtd in its own network namespace, the tiny guest, two hosts.

No database: these tests talk to libvirt only (through kvmweb.virt and, where it offers nothing
yet, virsh).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from kvmweb.virt import close_all, get_domain_xml, get_host_info, list_domains
from kvmweb.virt.xml import parse_xml
from tests.lab.errors import GuestBootTimeout
from tests.lab.guests import MARKER, Guest, ensure_guest, migrate, remove_guest, unique_guest_name
from tests.lab.hosts import TWO_HOSTS_SH, LabHost, TwoHosts
from tests.lab.virsh import virsh

pytestmark = pytest.mark.integration


def _netns_of(pid: int) -> str:
    done = subprocess.run(
        ["ip", "netns", "identify", str(pid)], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.strip()


def _pidfile_pid(path: str) -> int:
    return int(Path(path).read_text().strip())


def test_lab_libvirtd_runs_inside_its_network_namespace(lab_host: LabHost, libvirt_host: str) -> None:
    assert libvirt_host == "qemu:///system"
    assert _netns_of(_pidfile_pid("/run/libvirtd.pid")) == lab_host.netns == "kvmweb-lab"
    info = get_host_info(lab_host.target)
    assert info.hypervisor == "QEMU"


def test_tiny_guest_boots_and_prints_its_marker(running_tiny_guest: Guest) -> None:
    guest = running_tiny_guest
    line = guest.wait_for_marker(60)
    assert line.startswith(MARKER) and f"name={guest.name}" in line
    assert guest.state() == "running"
    # The console: VGA, through a VNC unix socket the main namespace can reach.
    root = parse_xml(get_domain_xml(guest.host.target, guest.uuid))
    listen = root.find("devices/graphics/listen")
    assert listen is not None and listen.get("socket") == guest.vnc_socket_in_host
    assert guest.vnc_socket.is_socket()
    assert root.get("type") == "qemu"


def test_tiny_guest_sees_its_data_disk(running_tiny_guest: Guest) -> None:
    guest = running_tiny_guest
    guest.wait_for_agent(30)
    code, size = guest.run("/bin/cat", "/sys/block/vda/size")
    assert code == 0 and int(size) * 512 == 64 * 1024 * 1024
    volumes = virsh(guest.host.uri, "vol-list", "kvmweb-lab")
    assert f"{guest.name}-data.qcow2" in volumes


def test_acpi_shutdown_reaches_shut_off(running_tiny_guest: Guest) -> None:
    guest = running_tiny_guest
    guest.shutdown(mode="acpi")
    took = guest.wait_for_state("shutoff", timeout=30)
    assert "ACPI power button pressed" in guest.serial_output()
    print(f"ACPI shutdown -> shut off in {took:.1f} s")


def test_agent_shutdown_reaches_shut_off(running_tiny_guest: Guest) -> None:
    guest = running_tiny_guest
    guest.wait_for_agent(30)
    guest.shutdown(mode="agent")
    took = guest.wait_for_state("shutoff", timeout=30)
    print(f"agent shutdown -> shut off in {took:.1f} s")


def test_a_guest_without_marker_fails_with_its_serial_log(lab_host: LabHost) -> None:
    name = unique_guest_name("nomarker")
    remove_guest(lab_host, name)
    guest = ensure_guest(lab_host, name, data_disk=False, start=False, cmdline_extra="rdinit=/no-such-init")
    try:
        guest.start()
        with pytest.raises(GuestBootTimeout) as failure:
            guest.wait_for_marker(timeout=8)
        message = str(failure.value)
        assert str(guest.serial_log) in message
        assert "Kernel panic" in message or "rdinit" in message, message
    finally:
        remove_guest(lab_host, name)


def test_live_migration_p2p_keeps_the_guest_running(two_hosts: TwoHosts) -> None:
    h1, h2 = two_hosts
    name = unique_guest_name("mig")
    remove_guest(h1, name)
    remove_guest(h2, name)
    guest = ensure_guest(h1, name, data_disk=False, start=True, wait=True)
    try:
        guest.wait_for_agent(30)
        token = secrets.token_hex(8).encode()
        guest.write_file("/tmp/kvmweb-marker", token)  # in the initramfs, i.e. in RAM
        before = guest.uptime()
        start = time.monotonic()
        moved = migrate(guest, h2)
        took = time.monotonic() - start
        assert moved.state() == "running"
        assert moved.read_file("/tmp/kvmweb-marker") == token
        assert moved.uptime() >= before
        assert name not in {d.name for d in list_domains(h1.target)}
        print(f"live p2p migration h1 -> h2 in {took:.1f} s")
    finally:
        remove_guest(h1, name)
        remove_guest(h2, name)


def test_live_migration_copies_non_shared_storage(two_hosts: TwoHosts) -> None:
    h1, h2 = two_hosts
    name = unique_guest_name("migdisk")
    remove_guest(h1, name)
    remove_guest(h2, name)
    guest = ensure_guest(h1, name, data_disk=True, start=True, wait=True)
    try:
        guest.wait_for_agent(30)
        token = secrets.token_hex(8)
        code, _ = guest.run("/bin/sh", "-c", f"echo {token} | dd of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null")
        assert code == 0
        start = time.monotonic()
        moved = migrate(guest, h2, copy_storage=True)
        took = time.monotonic() - start
        code, head = moved.run("/bin/sh", "-c", "dd if=/dev/vda bs=512 count=1 2>/dev/null | head -n1")
        assert code == 0 and head.strip() == token
        assert f"{name}-data.qcow2" in virsh(h2.uri, "vol-list", "kvmweb-lab")
        print(f"live p2p migration with storage copy h1 -> h2 in {took:.1f} s")
    finally:
        remove_guest(h1, name)
        remove_guest(h2, name)


def test_two_hosts_come_back_after_a_daemon_crash(two_hosts: TwoHosts) -> None:
    """A killed libvirtd leaves a stale pidfile and socket; start brings it back, guests survive."""
    _, h2 = two_hosts
    name = unique_guest_name("survivor")
    remove_guest(h2, name)
    guest = ensure_guest(h2, name, data_disk=False, start=True, wait=True)
    try:
        pidfile = Path(h2.socket).parent.parent / "libvirtd.pid"
        pid = _pidfile_pid(str(pidfile))
        os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] not in "ZX":
            assert time.monotonic() < deadline, "libvirtd did not die"
            time.sleep(0.05)
        assert pidfile.exists() and Path(h2.socket).exists()  # stale, as after a crash
        done = subprocess.run(
            ["bash", str(TWO_HOSTS_SH), "start"], capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert _pidfile_pid(str(pidfile)) != pid
        close_all()  # the cached connection died with the old daemon
        assert guest.state() == "running"  # QEMU outlived its libvirtd
    finally:
        remove_guest(h2, name)
