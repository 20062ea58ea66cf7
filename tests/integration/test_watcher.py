"""The events process against the real lab: libvirt events reach a WebSocket client with no kvmweb action,
and a host whose connection dies is marked unreachable, reconnected and reconciled.

Real parts: libvirtd in the lab's network namespace, `manage.py watch_hosts` and daphne as separate
processes, Redis, PostgreSQL and a token-authenticated WebSocket client.

The lab's libvirtd is shared with other test runs, so these tests never restart it. The connection
tests put a unix-socket forwarder (``SocketCut``, owned by the test) between the watcher and the lab's
socket instead: closing it is, for the watcher, what a libvirtd restart is (the connection ends, new
ones are refused until it is back), and ``blackhole()`` is a host that stops answering without closing
anything, which only keepalive can detect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from rest_framework.authtoken.models import Token

from hosts.messages import watcher_notify
from hosts.models import Host
from hosts.watcher.host import CLOSE_REASONS, KEEPALIVE
from kvmweb import virt
from kvmweb.virt.xml import build_domain_xml
from tests.factories import make_user
from tests.lab.guests import guest_spec, remove_guest, unique_guest_name
from tests.lab.virsh import virsh
from tests.stack import ROOT, free_port, port_open, process_env, running, stop, wait_until
from vms.models import VirtualMachine

pytestmark = pytest.mark.integration

# -- the processes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):  # type: ignore[no-untyped-def]
    """watch_hosts and daphne, as separate processes on the test database and the real Redis."""
    logs: Path = tmp_path_factory.mktemp("watcher")
    with django_db_blocker.unblock():
        env = process_env()
    port = free_port()
    watcher_log, ws_log = logs / "watch_hosts.log", logs / "daphne.log"
    watcher = ["python", "manage.py", "watch_hosts"]
    daphne = ["daphne", "-b", "127.0.0.1", "-p", str(port), "kvmweb.asgi:application"]
    with (
        running(
            watcher,
            env=env,
            log=watcher_log,
            ready=lambda: "listening for host" in watcher_log.read_text(),
            what="watch_hosts",
        ),  # fmt: skip
        running(daphne, env=env, log=ws_log, ready=lambda: port_open(port), what="daphne"),
    ):
        yield {"port": port, "watcher_log": watcher_log}


@pytest.fixture(autouse=True)
def _unwatch(transactional_db):  # type: ignore[no-untyped-def]
    """Each test's hosts are removed and the watcher told, so no watcher outlives its test's rows."""
    yield
    for host_id in list(Host.objects.values_list("pk", flat=True)):
        Host.objects.filter(pk=host_id).delete()
        watcher_notify(host_id)


class Listener:
    """A WebSocket client on /ws/events/ in its own thread; the test waits for the message it expects."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        self._stop = threading.Event()
        self._from = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        self.wait_for(lambda m: m["type"] == "hello", timeout=10, what="the server's hello")

    async def _run(self) -> None:
        try:
            async with websockets.connect(self.url, origin="http://localhost", open_timeout=10) as ws:
                while not self._stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.2)
                    except TimeoutError:
                        continue
                    message = json.loads(raw)
                    message["_at"] = time.monotonic()
                    self._queue.put(message)
        except BaseException as exc:
            self._queue.put(exc)

    def mark(self) -> None:
        """Later waits only look at messages received from now on (say, after an action)."""
        self._drain()
        self._from = len(self.seen)

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._keep(item)

    def _keep(self, item: dict[str, Any] | BaseException) -> None:
        if isinstance(item, BaseException):
            raise AssertionError(f"the WebSocket failed: {item!r}")
        self.seen.append(item)

    def wait_for(self, accept: Callable[[dict[str, Any]], bool], *, timeout: float, what: str) -> dict[str, Any]:
        """The first message since the last ``mark()``, received or still to come, that ``accept`` takes."""
        for message in self.seen[self._from :]:
            if accept(message):
                return message
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kinds = [(m["type"], m.get("state") or m.get("host", {})) for m in self.seen[-15:]]
                raise AssertionError(f"no message for {what} within {timeout:g} s; last seen: {kinds}")
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            self._keep(item)
            if accept(self.seen[-1]):
                return self.seen[-1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@contextlib.contextmanager
def listening(stack: dict, user) -> Iterator[Listener]:  # type: ignore[no-untyped-def]
    token = Token.objects.create(user=user).key
    listener = Listener(f"ws://127.0.0.1:{stack['port']}/ws/events/?token={token}")
    try:
        yield listener
    finally:
        listener.close()


def vm_message(uuid: str, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "vm.state" and m["vm"] == uuid and m["state"] == state


def host_message(host: Host, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "host.state" and m["host"]["id"] == host.pk and m["host"]["state"] == state


def watch(name: str, uri: str) -> Host:
    """A host row, announced to the watcher the way the host services announce one."""
    host = Host.objects.create(name=name, uri=uri)
    watcher_notify(host.pk)
    return host


def vm_row(uuid: str) -> VirtualMachine | None:
    return VirtualMachine.objects.filter(uuid=uuid).first()


def wait_for_row(uuid: str, accept: Callable[[VirtualMachine], bool], *, timeout: float, what: str) -> VirtualMachine:
    wait_until(lambda: (row := vm_row(uuid)) is not None and accept(row), timeout=timeout, what=what)
    row = vm_row(uuid)
    assert row is not None
    return row


# -- a guest of this module's own -------------------------------------------------------------


@pytest.fixture(scope="module")
def own_guest(lab_host) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A running diskless tiny guest that these tests may stop and start; returns its UUID."""
    name = unique_guest_name("watch")
    remove_guest(lab_host, name)
    summary = virt.define_domain(lab_host.target, build_domain_xml(guest_spec(name, data_disk=False)))
    virt.start_domain(lab_host.target, summary.uuid)
    yield summary.uuid
    remove_guest(lab_host, name)


# -- 1. events reach the browser ----------------------------------------------------------------


def test_guest_stopped_and_started_with_virsh_reaches_the_browser_and_the_row(  # type: ignore[no-untyped-def]
    stack, transactional_db, libvirt_host, own_guest
):
    ada = make_user("ada", admin=True)
    with listening(stack, ada) as ws:
        host = watch("lab", libvirt_host)
        ws.wait_for(host_message(host, "connected"), timeout=30, what="the host connected")
        row = wait_for_row(own_guest, lambda vm: vm.state == "running", timeout=10, what="the guest's row")
        assert (row.host_id, row.owner_id) == (host.pk, None)

        ws.mark()
        virsh(libvirt_host, "destroy", own_guest)
        message = ws.wait_for(vm_message(own_guest, "shutoff"), timeout=10, what="the guest shut off")
        assert {k: message[k] for k in ("type", "v", "host", "state", "reason")} == {
            "type": "vm.state",
            "v": 1,
            "host": host.pk,
            "state": "shutoff",
            "reason": "destroyed",
        }
        row = vm_row(own_guest)
        assert row is not None and (row.state, row.state_reason, row.version) == (
            "shutoff",
            "destroyed",
            message["version"],
        )

        ws.mark()
        virsh(libvirt_host, "start", own_guest)
        message = ws.wait_for(vm_message(own_guest, "running"), timeout=10, what="the guest running again")
        assert message["reason"] == "booted"
        row = vm_row(own_guest)
        assert row is not None and (row.state, row.state_reason) == ("running", "booted")

        ws.mark()
        virsh(libvirt_host, "suspend", own_guest)
        ws.wait_for(vm_message(own_guest, "paused"), timeout=10, what="the guest paused")
        ws.mark()
        virsh(libvirt_host, "resume", own_guest)
        ws.wait_for(vm_message(own_guest, "running"), timeout=10, what="the guest resumed")
    # Versions only grow, so a page can drop a message older than what it shows.
    versions = [m["version"] for m in ws.seen if m["type"] == "vm.state" and m["vm"] == own_guest]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert vm_row(own_guest).state == "running"  # type: ignore[union-attr]


def test_guest_defined_and_undefined_outside_kvmweb_appears_unowned_then_gone(  # type: ignore[no-untyped-def]
    stack, transactional_db, lab_host, libvirt_host
):
    ada = make_user("ada", admin=True)
    name = unique_guest_name("watch-def")
    remove_guest(lab_host, name, delete_volume=False)
    with listening(stack, ada) as ws:
        host = watch("lab", libvirt_host)
        ws.wait_for(host_message(host, "connected"), timeout=30, what="the host connected")
        try:
            ws.mark()
            summary = virt.define_domain(lab_host.target, build_domain_xml(guest_spec(name, data_disk=False)))
            message = ws.wait_for(vm_message(summary.uuid, "shutoff"), timeout=10, what="the new guest")
            assert message["name"] == name
            row = vm_row(summary.uuid)
            assert row is not None and (row.name, row.owner_id, row.host_id) == (name, None, host.pk)
        finally:
            remove_guest(lab_host, name, delete_volume=False)
        ws.wait_for(vm_message(summary.uuid, "gone"), timeout=10, what="the guest gone")
    assert vm_row(summary.uuid).state == "gone"  # type: ignore[union-attr]


# -- 2. a connection that dies ----------------------------------------------------------------


class SocketCut:
    """A unix-socket forwarder to the lab's libvirtd that the test can close, reopen or silence."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.dir = Path(tempfile.mkdtemp(prefix="kvmweb-cut-"))  # short: unix socket paths max 107 bytes
        self.path = self.dir / "libvirt-sock"
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="socket-cut", daemon=True)
        self._thread.start()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._silent = False

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.path}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def open(self) -> None:
        self._silent = False
        self._call(self._open())

    async def _open(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            daemon_r, daemon_w = await asyncio.open_unix_connection(self.upstream)
        except OSError:
            client_w.close()
            return
        self._writers |= {client_w, daemon_w}
        await asyncio.gather(self._pump(client_r, daemon_w), self._pump(daemon_r, client_w), return_exceptions=True)
        for writer in (client_w, daemon_w):
            writer.close()
            self._writers.discard(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self._silent:
                writer.write(data)
                await writer.drain()
        writer.close()

    def close(self) -> None:
        """What a libvirtd restart looks like from the client: every connection ends, new ones are refused."""
        self._call(self._close())

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.path.unlink(missing_ok=True)

    def blackhole(self) -> None:
        """A host that stops answering (a pulled cable): nothing is closed, nothing gets through."""
        self._silent = True

    def shutdown(self) -> None:
        self.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cut(lab_host) -> Iterator[SocketCut]:  # type: ignore[no-untyped-def]
    proxy = SocketCut(lab_host.socket)
    proxy.open()
    yield proxy
    proxy.shutdown()


def test_lost_connection_marks_host_unreachable_then_reconnects_and_reconciles(  # type: ignore[no-untyped-def]
    stack, transactional_db, lab_host, cut, own_guest
):
    ada = make_user("ada", admin=True)
    newcomer = unique_guest_name("watch-new")
    remove_guest(lab_host, newcomer, delete_volume=False)
    with listening(stack, ada) as ws:
        host = watch("cut", cut.uri)
        ws.wait_for(host_message(host, "connected"), timeout=30, what="the host connected")
        if virt.domain_state(lab_host.target, own_guest).state != "running":
            virt.start_domain(lab_host.target, own_guest)
        wait_for_row(own_guest, lambda vm: vm.state == "running", timeout=10, what="the guest running")

        ws.mark()
        cut.close()  # the daemon "restarts"
        began = time.monotonic()
        lost = ws.wait_for(host_message(host, "unreachable"), timeout=15, what="the host unreachable")
        assert time.monotonic() - began < 15
        assert lost["host"]["last_error"] in (CLOSE_REASONS["eof"], CLOSE_REASONS["error"])
        host.refresh_from_db()
        assert host.state == "unreachable" and host.last_error

        # While the watcher cannot see: a guest stops and a new one is defined.
        virt.destroy_domain(lab_host.target, own_guest)
        try:
            added = virt.define_domain(lab_host.target, build_domain_xml(guest_spec(newcomer, data_disk=False)))
            cut.open()  # the daemon is back
            ws.wait_for(host_message(host, "connected"), timeout=30, what="the host reconnected")
            # The reconcile after reconnecting caught both changes no event told the watcher about.
            assert vm_row(own_guest).state == "shutoff"  # type: ignore[union-attr]
            row = vm_row(added.uuid)
            assert row is not None and (row.name, row.state, row.owner_id) == (newcomer, "shutoff", None)
            ws.wait_for(vm_message(own_guest, "shutoff"), timeout=5, what="the stopped guest's message")
            ws.wait_for(vm_message(added.uuid, "shutoff"), timeout=5, what="the new guest's message")

            # And events flow again on the new connection.
            ws.mark()
            virt.start_domain(lab_host.target, own_guest)
            ws.wait_for(vm_message(own_guest, "running"), timeout=10, what="an event after reconnecting")
        finally:
            remove_guest(lab_host, newcomer, delete_volume=False)
    log = stack["watcher_log"].read_text()
    assert "host cut: connection lost" in log and "host cut (" in log and "reconnected" in log


def _restart_lab_libvirtd() -> None:
    """SIGTERM the lab's libvirtd (guests keep running) and start it again with the lab script."""
    pid = int(Path("/run/libvirtd.pid").read_text().strip())
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="libvirtd to exit")
    subprocess.run(["bash", str(ROOT / "scripts/lab/lab.sh"), "start"], check=True, capture_output=True, timeout=120)


def test_real_libvirtd_restart_is_survived_and_state_is_right_afterwards(  # type: ignore[no-untyped-def]
    stack, transactional_db, lab_host, libvirt_host, own_guest
):
    ada = make_user("ada", admin=True)
    with listening(stack, ada) as ws:
        host = watch("lab", libvirt_host)
        ws.wait_for(host_message(host, "connected"), timeout=30, what="the host connected")
        if virt.domain_state(lab_host.target, own_guest).state != "running":
            virt.start_domain(lab_host.target, own_guest)
        wait_for_row(own_guest, lambda vm: vm.state == "running", timeout=10, what="the guest running")

        ws.mark()
        _restart_lab_libvirtd()
        ws.wait_for(host_message(host, "unreachable"), timeout=15, what="the host unreachable")
        ws.wait_for(host_message(host, "connected"), timeout=60, what="the host reconnected")
        # The guest survived the daemon restart, and the index says so.
        assert virt.domain_state(lab_host.target, own_guest).state == "running"
        assert vm_row(own_guest).state == "running"  # type: ignore[union-attr]

        ws.mark()
        virsh(libvirt_host, "suspend", own_guest)
        ws.wait_for(vm_message(own_guest, "paused"), timeout=10, what="an event from the restarted daemon")
        virsh(libvirt_host, "resume", own_guest)
        ws.wait_for(vm_message(own_guest, "running"), timeout=10, what="the guest resumed")


def test_host_that_stops_answering_is_found_dead_by_keepalive(  # type: ignore[no-untyped-def]
    stack, transactional_db, cut
):
    ada = make_user("ada", admin=True)
    with listening(stack, ada) as ws:
        host = watch("silent", cut.uri)
        ws.wait_for(host_message(host, "connected"), timeout=30, what="the host connected")
        ws.mark()
        cut.blackhole()
        began = time.monotonic()
        # libvirt closes a connection after count + 1 unanswered keepalives, one every interval: 15 s.
        interval, count = KEEPALIVE
        limit = interval * (count + 1)
        lost = ws.wait_for(host_message(host, "unreachable"), timeout=limit + 2, what="keepalive noticing the silence")
        assert (
            lost["host"]["last_error"]
            == CLOSE_REASONS["keepalive"]
            == ("The host stopped answering: no keepalive reply for 15 s.")
        )
        detected = time.monotonic() - began
        # Timers tick a little late; the mark is in the database and on its way within about a second of the limit.
        assert detected < limit + 1, detected
        print(f"silent host found dead after {detected:.1f} s")
        ws.mark()
        cut.close()
        cut.open()
        ws.wait_for(host_message(host, "connected"), timeout=30, what="the host reconnected")


# -- 3. hosts changed in the database -----------------------------------------------------------


def test_disabling_and_removing_a_host_stops_watching_it(  # type: ignore[no-untyped-def]
    stack, transactional_db, libvirt_host
):
    host = watch("lab", libvirt_host)
    wait_until(lambda: Host.objects.get(pk=host.pk).state == "connected", timeout=30, what="the host connected")
    log = stack["watcher_log"]
    let_go = "host lab: disabled or removed"
    before = log.read_text().count(let_go)
    Host.objects.filter(pk=host.pk).update(enabled=False, state="disabled")
    watcher_notify(host.pk)
    wait_until(lambda: log.read_text().count(let_go) > before, timeout=10, what="the watcher letting go")
    host.refresh_from_db()
    assert host.state == "disabled"  # the watcher did not mark it unreachable on the way out


# -- 4. the process -----------------------------------------------------------------------------


def test_sigterm_closes_the_event_connections_and_exits_zero(  # type: ignore[no-untyped-def]
    stack, transactional_db, libvirt_host, tmp_path
):
    Host.objects.create(name="lab", uri=libvirt_host)
    log = tmp_path / "watch_hosts.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["python", "manage.py", "watch_hosts"], cwd=ROOT, env=process_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: "host lab (qemu:///system): connected" in log.read_text(), timeout=30, what="connected",
                   log=log)  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()
    finally:
        stop(proc)
    lines = log.read_text()
    assert "SIGTERM received: closing event connections" in lines and lines.rstrip().endswith("stopped"), lines
