"""The VM's QEMU and serial logs: local reads under a temporary log directory, remote hosts, limits, the tab.

alice owns the VM, bob is another user. KVMWEB_QEMU_LOG_DIR points at a temporary directory, so
"local" reads are real file reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.factories import make_host, make_vm
from vms import logs
from vms.logs import TAIL_BYTES, LogView, qemu_log, vm_logs


@pytest.fixture
def log_dir(tmp_path, settings) -> Path:  # type: ignore[no-untyped-def]
    directory = tmp_path / "qemu"
    directory.mkdir()
    settings.KVMWEB_QEMU_LOG_DIR = str(directory)
    return directory


def vm_on(uri: str, name: str = "web1", owner: Any = None, xml: str = "") -> Any:
    host = make_host(f"h-{abs(hash((uri, name))) % 10**6}", uri=uri)
    return make_vm(host, name, owner=owner, xml=xml)


def serial_xml(path: str) -> str:
    return (
        "<domain type='kvm'><name>web1</name><devices>"
        f"<serial type='pty'><log file='{path}' append='on'/><target port='0'/></serial>"
        "<console type='pty'><target type='serial' port='0'/></console>"
        "</devices></domain>"
    )


@pytest.mark.parametrize("uri", ["qemu:///system", "qemu+ssh://localhost/system", "qemu+unix:///system?socket=/x"])
def test_a_local_hosts_qemu_log_is_read(db, log_dir, uri) -> None:  # type: ignore[no-untyped-def]
    (log_dir / "web1.log").write_text("2024-01-01 starting up\nLC_ALL=C qemu-system-x86_64 -name guest=web1\n")
    view = qemu_log(vm_on(uri))
    assert view == LogView(
        path=str(log_dir / "web1.log"),
        text="2024-01-01 starting up\nLC_ALL=C qemu-system-x86_64 -name guest=web1\n",
        reason="",
        title="QEMU log",
        truncated=False,
        size=68,
    )


def test_a_session_hosts_log_is_under_the_users_cache(db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOME", str(tmp_path))
    session = tmp_path / ".cache/libvirt/qemu/log"
    session.mkdir(parents=True)
    (session / "web1.log").write_text("session guest\n")
    view = qemu_log(vm_on("qemu:///session"))
    assert (view.path, view.text) == (str(session / "web1.log"), "session guest\n")


def test_a_big_log_shows_its_last_256_kib_from_a_whole_line(db, log_dir) -> None:  # type: ignore[no-untyped-def]
    lines = [f"line {n:06d} " + "x" * 80 + "\n" for n in range(5000)]  # about 450 KiB
    (log_dir / "web1.log").write_text("".join(lines))
    view = qemu_log(vm_on("qemu:///system"))
    assert view.truncated is True and view.size == sum(len(line) for line in lines)
    assert view.text is not None and len(view.text.encode()) <= TAIL_BYTES
    assert view.text.endswith(lines[-1])
    assert view.text.startswith("line ")  # no half line at the top
    assert view.text.splitlines()[0] + "\n" in lines


def test_a_missing_log_says_qemu_writes_it_at_the_first_start(db, log_dir) -> None:  # type: ignore[no-untyped-def]
    view = qemu_log(vm_on("qemu:///system"))
    assert view.text is None
    assert view.reason == f"No log yet at {log_dir / 'web1.log'}: QEMU writes it when the VM first starts."


def test_a_remote_host_says_where_the_log_is(db, log_dir) -> None:  # type: ignore[no-untyped-def]
    (log_dir / "web1.log").write_text("this machine's file, not kvm1's\n")
    view = qemu_log(vm_on("qemu+ssh://admin@kvm1.example.net/system"))
    assert view.text is None
    assert view.reason == (
        f"This log is on kvm1.example.net, at {log_dir}/web1.log. kvmweb reads logs only on its own machine: "
        f"read it there, e.g. ssh kvm1.example.net sudo tail -n 200 {log_dir}/web1.log"
    )


def test_a_simulated_vm_has_no_log(db, log_dir) -> None:  # type: ignore[no-untyped-def]
    view = qemu_log(vm_on("test:///default"))
    assert view.text is None and "libvirt's test driver" in view.reason


@pytest.mark.parametrize("name", ["..", "../../etc/passwd", "web 1", "web1/../../x"])
def test_a_name_that_could_leave_the_log_directory_is_never_read(db, log_dir, name) -> None:  # type: ignore[no-untyped-def]
    (log_dir.parent / "passwd").write_text("secret\n")
    view = qemu_log(vm_on("qemu:///system", name=name))
    assert view.text is None
    assert "letters, digits, dots, dashes and underscores" in view.reason


def test_a_log_that_links_outside_the_directory_is_not_followed(db, log_dir) -> None:  # type: ignore[no-untyped-def]
    secret = log_dir.parent / "secret.txt"
    secret.write_text("do not show\n")
    (log_dir / "web1.log").symlink_to(secret)
    view = qemu_log(vm_on("qemu:///system"))
    assert view.text is None and "outside" in view.reason


def test_the_serial_log_is_shown_after_the_qemu_log(db, log_dir) -> None:  # type: ignore[no-untyped-def]
    (log_dir / "web1.log").write_text("qemu\n")
    (log_dir / "web1-serial.log").write_text("Linux version 6.1\nlogin:\n")
    views = vm_logs(vm_on("qemu:///system", xml=serial_xml(str(log_dir / "web1-serial.log"))))
    assert [(view.title, view.text) for view in views] == [
        ("QEMU log", "qemu\n"),
        ("Serial log", "Linux version 6.1\nlogin:\n"),
    ]


def test_a_serial_log_outside_the_log_directory_is_not_read(db, log_dir) -> None:  # type: ignore[no-untyped-def]
    views = vm_logs(vm_on("qemu:///system", xml=serial_xml("/etc/passwd")))
    serial = views[1]
    assert serial.text is None
    assert (
        serial.reason == f"The log is at /etc/passwd, outside {log_dir}: kvmweb reads only logs under that directory."
    )


def test_serial_log_paths_come_from_the_domain_xml() -> None:
    assert logs.serial_log_paths(serial_xml("/var/log/libvirt/qemu/g-serial.log")) == [
        "/var/log/libvirt/qemu/g-serial.log"
    ]
    assert logs.serial_log_paths("<domain><devices/></domain>") == []
    assert logs.serial_log_paths("not xml") == []


# --- the tab's endpoint ------------------------------------------------------------------------------------------


def test_owner_gets_the_log_partial_escaped(db, log_dir, alice) -> None:  # type: ignore[no-untyped-def]
    vm = vm_on("qemu:///system", owner=alice)
    (log_dir / "web1.log").write_text("<script>alert(1)</script>\n")
    client = Client()
    client.force_login(alice)
    response = client.get(f"/vms/{vm.uuid}/log/")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert" not in body
    assert "<html" not in body and "data-logs-refresh" in body


def test_the_vm_page_loads_the_logs_lazily(db, log_dir, alice) -> None:  # type: ignore[no-untyped-def]
    vm = vm_on("qemu:///system", owner=alice)
    (log_dir / "web1.log").write_text("never rendered with the page\n")
    client = Client()
    client.force_login(alice)
    page = client.get(f"/vms/{vm.uuid}/").content.decode()
    assert f'data-url="/vms/{vm.uuid}/log/"' in page and "never rendered with the page" not in page


def test_other_user_gets_404_and_anonymous_goes_to_sign_in(db, log_dir, alice, bob) -> None:  # type: ignore[no-untyped-def]
    vm = vm_on("qemu:///system", owner=alice)
    client = Client()
    client.force_login(bob)
    assert client.get(f"/vms/{vm.uuid}/log/").status_code == 404
    anonymous = Client().get(f"/vms/{vm.uuid}/log/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")


def test_terminal_escapes_are_dropped_from_what_is_shown(db, log_dir) -> None:  # type: ignore[no-untyped-def]
    (log_dir / "web1.log").write_bytes(b"\x1b[1;32mOK\x1b[0m booted\r\nprompt# \x1b[6n\x07\n")
    assert qemu_log(vm_on("qemu:///system")).text == "OK booted\nprompt# \n"
