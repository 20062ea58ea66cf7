"""The graphical console for real: a Python RFB client → nginx → the console proxy process → the tiny guest's VNC."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from consoles import tokens
from consoles.models import ConsoleSession
from consoles.services import console_open
from hosts.inventory import host_reconcile
from hosts.models import Host
from kvmweb import virt
from kvmweb.actors import Actor
from kvmweb.virt.xml import parse_xml
from tests.factories import make_user
from tests.lab.guests import Guest
from tests.stack import ROOT, free_port, port_open, process_env, running, wait_until
from tests.vnc import Closed, RFBClient, WebSocketClient, reforge
from vms.models import VirtualMachine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def front(django_db_setup, django_db_blocker) -> Iterator[tuple[str, int]]:  # type: ignore[no-untyped-def]
    """The console proxy process (as the Procfile runs it) behind nginx rendered by scripts/nginx_conf.py."""
    var = Path(tempfile.mkdtemp(prefix="kvmweb-clab-", dir="/tmp"))
    port = free_port()
    with django_db_blocker.unblock():
        env = process_env(KVMWEB_VAR_DIR=str(var))
    conf = var / "run" / "nginx.conf"
    subprocess.run(
        [
            sys.executable,
            "scripts/nginx_conf.py",
            "--var-dir",
            str(var),
            "--listen",
            f"127.0.0.1:{port}",
            "--out",
            str(conf),
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    console = [sys.executable, "manage.py", "console_proxy", "--socket", str(var / "run" / "console.sock")]
    log = var / "console.log"
    nginx = ["nginx", "-c", str(conf), "-e", str(var / "nginx-error.log"), "-g", "daemon off;"]
    try:
        with (
            running(console, env=env, log=log, ready=lambda: "listening on" in log.read_text(), what="console proxy"),
            running(nginx, env=env, log=var / "nginx.log", ready=lambda: port_open(port), what="nginx"),
        ):
            yield ("127.0.0.1", port)
    finally:
        shutil.rmtree(var, ignore_errors=True)


@pytest.fixture
def lab_vms(front, running_tiny_guest, lab_host, transactional_db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The lab host in kvmweb with its guests' rows (XML included), the tiny guest owned by alice."""
    alice = make_user("alice")
    host = Host.objects.create(name="lab", uri=lab_host.uri, state=Host.State.CONNECTED)
    host.members.set([alice])
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
    vm = VirtualMachine.objects.get(uuid=running_tiny_guest.uuid)
    VirtualMachine.objects.filter(pk=vm.pk).update(owner=alice)
    vm.refresh_from_db()
    return {"front": front, "vm": vm, "alice": alice, "guest": running_tiny_guest, "host": host}


def url_for(setup: dict[str, Any], **fields: Any) -> str:
    return console_open(actor=Actor(user=setup["alice"], ip="127.0.0.1"), vm=setup["vm"], **fields).websocket_url


def refused(setup: dict[str, Any], url: str) -> Closed:
    ws = WebSocketClient.open(setup["front"], url)
    with pytest.raises(Closed) as closed:
        ws.recv_message()
    ws.close()
    return closed.value


def test_kvmweb_guests_share_their_vnc_and_have_no_power_control(lab_vms) -> None:  # type: ignore[no-untyped-def]
    graphics = parse_xml(lab_vms["vm"].xml).find("devices/graphics[@type='vnc']")
    assert graphics is not None
    assert graphics.get("sharePolicy") == "force-shared"
    assert graphics.get("powerControl") in (None, "no")


def test_an_rfb_client_through_the_proxy_sees_the_guests_screen(lab_vms) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = lab_vms["guest"]
    url = url_for(lab_vms)
    assert url.startswith(settings.KVMWEB_CONSOLE_PATH + "?token=")
    began = time.monotonic()
    ws = WebSocketClient.open(lab_vms["front"], url)
    rfb = RFBClient(ws)
    rfb.handshake()
    assert rfb.width > 0 and rfb.height > 0
    rfb.request_update(incremental=False)
    rects = rfb.read_update()
    took = time.monotonic() - began
    assert rects, "an update with no rectangles"
    covered = sum(w * h for _, _, w, h, encoding, _ in rects if encoding == 0)
    assert covered == rfb.width * rfb.height
    assert all(len(pixels) == w * h * rfb.bytes_per_pixel for _, _, w, h, _, pixels in rects)

    def live() -> bool:
        return ConsoleSession.objects.filter(vm=lab_vms["vm"], ended=None).exists()

    wait_until(live, timeout=10, what="the live session row")
    session = ConsoleSession.objects.get(vm=lab_vms["vm"])
    assert (session.user, session.view_only, session.client_ip) == (lab_vms["alice"], False, "127.0.0.1")
    ws.close()
    wait_until(lambda: not live(), timeout=10, what="the session's end")
    session.refresh_from_db()
    assert session.bytes_to_client >= rfb.width * rfb.height * rfb.bytes_per_pixel
    assert session.end_reason == "closed by the browser"
    print(f"token → first framebuffer update through nginx and the proxy: {took * 1000:.0f} ms ({guest.name})")


def test_a_used_token_is_refused(lab_vms) -> None:  # type: ignore[no-untyped-def]
    url = url_for(lab_vms)
    first = WebSocketClient.open(lab_vms["front"], url)
    RFBClient(first).handshake()
    closed = refused(lab_vms, url)
    assert (closed.code, closed.reason) == (4001, "This console link was already used; open the console again.")
    first.close()


def test_an_expired_token_is_refused(lab_vms) -> None:  # type: ignore[no-untyped-def]
    vm: VirtualMachine = lab_vms["vm"]
    grant = tokens.ConsoleGrant(
        user=lab_vms["alice"].pk,
        vm=str(vm.uuid),
        kind="vnc",
        target={"socket": lab_vms["guest"].vnc_socket_in_host},
        view_only=False,
        expires=time.time() - 1,
    )
    closed = refused(lab_vms, f"{settings.KVMWEB_CONSOLE_PATH}?token={tokens.sign(grant)}")
    assert (closed.code, closed.reason) == (4001, "This console link has expired; open the console again.")
    assert not ConsoleSession.objects.exists()


def test_a_token_for_vm_a_cannot_open_vm_b(lab_vms) -> None:  # type: ignore[no-untyped-def]
    vm_a: VirtualMachine = lab_vms["vm"]
    # VM B: another VM on the same host, with its own VNC socket; alice does not own it.
    vm_b = VirtualMachine.objects.create(
        uuid="bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
        host=lab_vms["host"],
        name="other",
        state="running",
        vcpus=1,
        memory_kib=65536,
        max_memory_kib=65536,
        xml=vm_a.xml.replace(vm_a.name, "other"),
    )
    url = url_for(lab_vms)
    path, _, token = url.partition("?token=")
    forged = reforge(token, vm=str(vm_b.uuid))
    closed = refused(lab_vms, f"{path}?token={forged}")
    assert (closed.code, closed.reason) == (4001, "This console link is not valid.")
    assert not ConsoleSession.objects.exists()
    # The genuine token still opens VM A, once.
    ws = WebSocketClient.open(lab_vms["front"], url)
    RFBClient(ws).handshake()
    wait_until(lambda: ConsoleSession.objects.filter(vm=vm_a).exists(), timeout=10, what="VM A's session")
    assert not ConsoleSession.objects.filter(vm=vm_b).exists()
    ws.close()
