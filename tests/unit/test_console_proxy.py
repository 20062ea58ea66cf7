"""The console proxy in-process: real sockets, real Redis, the test database, and a fake VNC server on a unix socket."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from consoles import tokens
from consoles.models import ConsoleSession, ConsoleShare
from consoles.proxy.server import ConsoleProxyServer
from consoles.services import console_open, websocket_url
from consoles.sessions import sessions_close
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.realtime import groups
from tests.factories import PASSWORD, make_host, make_user, make_vm
from tests.stack import wait_until
from tests.vnc import (
    Closed,
    FakeVNCServer,
    RFBClient,
    WebSocketClient,
    client_cut_text,
    key_event,
    pointer_event,
    set_encodings,
    update_request,
)

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10.0
BROWSER_IP = "203.0.113.7"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A unix socket path must fit in 108 bytes; pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="kvmweb-console-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def guest(short_dir: Path) -> Iterator[FakeVNCServer]:
    server = FakeVNCServer(short_dir / "vnc.sock")
    yield server
    server.close()


@pytest.fixture
def proxy(short_dir: Path, settings: Any) -> Iterator[ConsoleProxyServer]:
    # The real channel layer, so the test can hear what the proxy announces.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [django_settings.CHANNEL_REDIS_URL], "prefix": settings.KVMWEB_CHANNEL_PREFIX},
        }
    }
    server = ConsoleProxyServer(str(short_dir / "console.sock"), db_threads=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    assert server.wait_ready(WAIT), "the proxy never subscribed to the close channel"
    yield server
    server.stop()
    thread.join(WAIT)


@pytest.fixture
def vm(guest: FakeVNCServer) -> Any:
    alice = make_user("alice")
    host = make_host("here", uri="qemu:///system", members=(alice,))
    xml = (
        "<domain type='qemu'><name>web1</name><devices>"
        f"<graphics type='vnc' sharePolicy='force-shared'><listen type='socket' socket='{guest.path}'/></graphics>"
        "</devices></domain>"
    )
    return make_vm(host, "web1", owner=alice, xml=xml)


def ticket(user: Any, vm: Any, *, view_only: bool = False) -> str:
    return console_open(actor=Actor(user=user, ip=BROWSER_IP), vm=vm, view_only=view_only).websocket_url


def connect(proxy: ConsoleProxyServer, url: str) -> WebSocketClient:
    return WebSocketClient.open(proxy.server_address, url, headers={"X-Real-IP": BROWSER_IP})


def refusal(proxy: ConsoleProxyServer, url: str) -> Closed:
    ws = connect(proxy, url)
    with pytest.raises(Closed) as closed:
        ws.recv_message()
    ws.close()
    return closed.value


def ended(session_id: int) -> ConsoleSession:
    wait_until(
        lambda: ConsoleSession.objects.get(pk=session_id).ended is not None, timeout=WAIT, what="the session's end"
    )
    return ConsoleSession.objects.get(pk=session_id)


def signed_in(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


def on_screen(
    proxy: ConsoleProxyServer, user: Any, vm: Any, *, view_only: bool = False
) -> tuple[RFBClient, ConsoleSession]:
    """`user` connected to `vm`'s console through the proxy: their RFB client and live session row."""
    rfb = RFBClient(connect(proxy, ticket(user, vm, view_only=view_only)))
    rfb.handshake()
    wait_until(
        lambda: ConsoleSession.objects.filter(user=user, ended=None).exists(), timeout=WAIT, what="the session row"
    )
    return rfb, ConsoleSession.objects.get(user=user, ended=None)


def only_session() -> ConsoleSession:
    wait_until(lambda: ConsoleSession.objects.count() == 1, timeout=WAIT, what="the session row")
    return ConsoleSession.objects.get()


def test_a_full_control_clients_keys_reach_the_guest(proxy, guest, vm):  # type: ignore[no-untyped-def]
    ws = connect(proxy, ticket(vm.owner, vm))
    rfb = RFBClient(ws)
    rfb.handshake(shared=False)
    rfb.send(key_event(0x61, True) + key_event(0x61, False) + pointer_event(1, 3, 2))
    sent = len(b"RFB 003.008\n\x01\x00") + len(set_encodings(0)) + 8 + 8 + 6

    assert guest.wait_for(lambda g: len(g.received) == sent - 14)
    assert bytes(guest.received) == set_encodings(0) + key_event(0x61, True) + key_event(0x61, False) + pointer_event(
        1, 3, 2
    )
    assert guest.shared_flags == [0]  # an owner's ClientInit passes as sent
    session = only_session()
    assert (session.user, session.vm, session.kind, session.view_only) == (vm.owner, vm, "vnc", False)
    assert session.ended is None and session.client_ip == BROWSER_IP

    ws.close()
    session = ended(session.pk)
    assert session.bytes_to_client == guest.sent == guest.handshake_bytes()
    assert session.bytes_from_client == sent
    assert session.end_reason == "closed by the browser"
    event = session.audit_event
    assert (event.action, event.outcome, event.actor, event.ip) == (
        "console.session",
        "succeeded",
        vm.owner,
        BROWSER_IP,
    )
    assert (event.target_type, event.target_id, event.target_label) == ("vm", str(vm.uuid), "web1")
    assert event.message.startswith("full control, ")
    assert f"{guest.handshake_bytes()} bytes to the browser, {sent} from it; closed by the browser" in event.message


def test_a_viewers_input_never_reaches_the_guest(proxy, guest, vm):  # type: ignore[no-untyped-def]
    bob = make_user("bob")
    ConsoleShare.objects.create(vm=vm, user=bob, created_by=vm.owner)
    ws = connect(proxy, ticket(bob, vm))  # shared: view-only, whatever was asked
    rfb = RFBClient(ws)
    rfb.handshake(shared=False)
    rfb.send(key_event(0x61, True) + pointer_event(1, 3, 2) + client_cut_text(b"reboot") + key_event(0x61, False))
    rfb.request_update()

    assert guest.wait_for(lambda g: bytes(g.received).endswith(update_request(False, 8, 4)))
    assert bytes(guest.received) == set_encodings(0) + update_request(False, 8, 4)
    assert guest.shared_flags == [1]  # a viewer never asks for exclusive access
    assert rfb.read_update()[0][:5] == (0, 0, 8, 4, 0)  # and still sees the screen

    session = only_session()
    assert session.view_only is True and session.audit_event.message == "view-only"
    ws.close()
    assert ended(session.pk).audit_event.message.startswith("view-only, ")


def test_an_unknown_message_from_a_viewer_closes_the_connection(proxy, guest, vm):  # type: ignore[no-untyped-def]
    ws = connect(proxy, ticket(vm.owner, vm, view_only=True))
    rfb = RFBClient(ws)
    rfb.handshake()
    rfb.send(b"\x63" + bytes(15))
    with pytest.raises(Closed) as closed:
        rfb.read_message()
    assert closed.value.code == 1008
    session = ended(only_session().pk)
    assert session.end_reason == "view-only client refused: client message type 99 cannot be filtered"
    # What came before it may or may not have gone out; the unknown message never does.
    assert bytes(guest.received) in (b"", set_encodings(0))


def test_a_used_token_gets_no_connection(proxy, guest, vm):  # type: ignore[no-untyped-def]
    url = ticket(vm.owner, vm)
    first = connect(proxy, url)
    RFBClient(first).handshake()

    closed = refusal(proxy, url)
    assert (closed.code, closed.reason) == (4001, "This console link was already used; open the console again.")
    assert guest.connections == 1
    denied = AuditEvent.objects.get(outcome="denied")
    assert (denied.action, denied.actor, denied.target_id) == ("console.session", vm.owner, str(vm.uuid))
    first.close()


def test_an_expired_token_gets_no_connection(proxy, guest, vm):  # type: ignore[no-untyped-def]
    grant = tokens.ConsoleGrant(
        user=vm.owner.pk,
        vm=str(vm.uuid),
        kind="vnc",
        target={"socket": guest.path},
        view_only=False,
        expires=time.time() - 1,
    )
    closed = refusal(proxy, f"{django_settings.KVMWEB_CONSOLE_PATH}?token={tokens.sign(grant)}")
    assert (closed.code, closed.reason) == (4001, "This console link has expired; open the console again.")
    assert guest.connections == 0 and ConsoleSession.objects.count() == 0


def test_a_missing_forged_or_tampered_token_gets_no_connection(proxy, guest, vm):  # type: ignore[no-untyped-def]
    url = ticket(vm.owner, vm)
    tampered = url[:-3] + ("A" if url[-3] != "A" else "B") + url[-2:]
    path = django_settings.KVMWEB_CONSOLE_PATH
    for bad in (tampered, f"{path}?token=not-a-token", f"{path}?token=", f"{path}?other=1", path):
        closed = refusal(proxy, bad)
        assert closed.code == 4001, bad
    assert refusal(proxy, tampered).reason == "This console link is not valid."
    assert guest.connections == 0 and ConsoleSession.objects.count() == 0


def test_a_viewer_whose_share_was_revoked_before_connecting_is_refused(proxy, guest, vm):  # type: ignore[no-untyped-def]
    bob = make_user("bob")
    share = ConsoleShare.objects.create(vm=vm, user=bob, created_by=vm.owner)
    url = ticket(bob, vm)
    share.delete()
    closed = refusal(proxy, url)
    assert closed.code == 4001 and "access" in closed.reason
    assert ConsoleSession.objects.count() == 0
    assert AuditEvent.objects.filter(action="console.session", outcome="denied", actor=bob).exists()


def test_a_guest_that_does_not_answer_is_reported(proxy, guest, vm):  # type: ignore[no-untyped-def]
    url = ticket(vm.owner, vm)
    guest.close()
    Path(guest.path).unlink()
    closed = refusal(proxy, url)
    assert closed.code == 4002
    assert ConsoleSession.objects.count() == 0


def test_a_remote_display_that_does_not_answer_names_the_address(proxy, vm):  # type: ignore[no-untyped-def]
    # A loopback port nothing listens on stands for a remote host's firewalled VNC port.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = {"host": "127.0.0.1", "port": port}
    grant = tokens.grant_for(user=vm.owner.pk, vm=str(vm.uuid), kind="vnc", target=target, view_only=False)
    closed = refusal(proxy, websocket_url(tokens.sign(grant)))
    assert (closed.code, closed.reason) == (
        4002,
        f"Cannot reach 127.0.0.1:{port} (Connection refused): check the host's console address and firewall.",
    )
    assert ConsoleSession.objects.count() == 0


def test_the_web_app_closes_a_live_session(proxy, guest, vm):  # type: ignore[no-untyped-def]
    ws = connect(proxy, ticket(vm.owner, vm))
    RFBClient(ws).handshake()
    session = only_session()

    assert sessions_close([session.pk], reason="Ownership of web1 changed.") >= 1
    with pytest.raises(Closed) as closed:
        ws.recv_message()
    assert (closed.value.code, closed.value.reason) == (4003, "Ownership of web1 changed.")
    assert ended(session.pk).end_reason == "Ownership of web1 changed."


def test_a_connected_session_outlives_its_token(proxy, guest, vm, settings):  # type: ignore[no-untyped-def]
    settings.KVMWEB_CONSOLE_TOKEN_TTL = 1
    issued = console_open(actor=Actor(user=vm.owner, ip=BROWSER_IP), vm=vm)
    rfb = RFBClient(connect(proxy, issued.websocket_url))
    rfb.handshake()
    session = only_session()

    # The clock, not an event, is what ends a token: wait until it has passed the expiry.
    wait_until(lambda: time.time() > issued.expires + 0.1, timeout=WAIT, what="the token's expiry")
    with pytest.raises(tokens.TokenRefused) as refused:
        tokens.verify(issued.token)
    assert refused.value.reason == "expired"

    rfb.request_update()
    assert rfb.read_update()[0][:5] == (0, 0, 8, 4, 0)  # the screen still arrives
    rfb.request_update()
    assert rfb.read_update()[0][:5] == (0, 0, 8, 4, 0)
    assert ConsoleSession.objects.get(pk=session.pk).ended is None
    rfb.close()
    assert ended(session.pk).end_reason == "closed by the browser"


def test_revoking_a_share_in_the_web_app_disconnects_the_viewer_only(proxy, guest, vm):  # type: ignore[no-untyped-def]
    alice, bob = vm.owner, make_user("bob")
    ConsoleShare.objects.create(vm=vm, user=bob, created_by=alice)
    owner, owners = on_screen(proxy, alice, vm)
    viewer, viewers = on_screen(proxy, bob, vm)
    assert viewers.view_only is True

    response = signed_in(alice).post(reverse("console_shares:revoke", args=[vm.uuid, "bob"]))
    assert response.status_code == 302
    with pytest.raises(Closed) as closed:
        viewer.read_message()
    reason = "web1's console is no longer shared with you."
    assert (closed.value.code, closed.value.reason) == (4003, reason)
    assert ended(viewers.pk).end_reason == reason

    owner.request_update()
    assert owner.read_update()[0][:5] == (0, 0, 8, 4, 0)
    assert ConsoleSession.objects.get(pk=owners.pk).ended is None
    owner.close()


def test_reassigning_the_vm_in_the_web_app_disconnects_the_previous_owner(proxy, guest, vm):  # type: ignore[no-untyped-def]
    alice, ada = vm.owner, make_user("ada", admin=True)
    make_user("bob")
    previous, previous_session = on_screen(proxy, alice, vm)
    admin, admin_session = on_screen(proxy, ada, vm)

    response = signed_in(ada).post(reverse("vms:reassign", args=[vm.uuid]), {"owner": "bob"})
    assert response.status_code == 302
    with pytest.raises(Closed) as closed:
        previous.read_message()
    assert (closed.value.code, closed.value.reason) == (4003, "web1 now belongs to bob.")
    assert ended(previous_session.pk).end_reason == "web1 now belongs to bob."

    admin.request_update()  # an administrator keeps full control of every console
    assert admin.read_update()[0][:5] == (0, 0, 8, 4, 0)
    assert ConsoleSession.objects.get(pk=admin_session.pk).ended is None
    admin.close()


def test_closing_one_session_leaves_the_others_connected(proxy, guest, vm):  # type: ignore[no-untyped-def]
    first = connect(proxy, ticket(vm.owner, vm))
    RFBClient(first).handshake()
    one = only_session()
    second = connect(proxy, ticket(vm.owner, vm))
    rfb = RFBClient(second)
    rfb.handshake()
    wait_until(lambda: ConsoleSession.objects.count() == 2, timeout=WAIT, what="two sessions")
    other = ConsoleSession.objects.exclude(pk=one.pk).get()
    sessions_close([one.pk, 999_999], reason="Ended by an administrator.")
    ended(one.pk)

    rfb.request_update()
    assert rfb.read_update()  # the other one still works
    assert ConsoleSession.objects.get(pk=other.pk).ended is None
    first.close()
    second.close()


def test_stopping_the_proxy_records_the_end_of_live_sessions(short_dir, guest, vm):  # type: ignore[no-untyped-def]
    server = ConsoleProxyServer(str(short_dir / "other.sock"), db_threads=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ws = connect(server, ticket(vm.owner, vm))
    RFBClient(ws).handshake()
    session = only_session()
    server.stop("The console proxy restarted; reconnect.")
    with pytest.raises(Closed) as closed:
        ws.recv_message()
    assert closed.value.code == 4003
    assert ConsoleSession.objects.get(pk=session.pk).end_reason == "The console proxy restarted; reconnect."
    assert not Path(short_dir / "other.sock").exists()


def test_start_and_end_are_announced_to_the_vms_pages(proxy, guest, vm):  # type: ignore[no-untyped-def]
    messages: list[dict[str, Any]] = []
    listening, done = threading.Event(), threading.Event()

    async def listen() -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(groups.target_group("vm", str(vm.uuid)), channel)
        listening.set()
        while len(messages) < 2:
            event = await asyncio.wait_for(layer.receive(channel), WAIT)
            messages.append(event["message"])
        done.set()

    listener = threading.Thread(target=lambda: asyncio.run(listen()), daemon=True)
    listener.start()
    assert listening.wait(WAIT)
    ws = connect(proxy, ticket(vm.owner, vm, view_only=True))
    RFBClient(ws).handshake()
    session = only_session()
    ws.close()
    session = ended(session.pk)
    assert done.wait(WAIT), messages

    base = {
        "type": "console.session",
        "v": 1,
        "vm": str(vm.uuid),
        "session": session.pk,
        "kind": "vnc",
        "user": "alice",
        "view_only": True,
        "started": session.started.isoformat(),
    }
    assert messages == [
        {**base, "live": True, "ended": None, "end_reason": ""},
        {**base, "live": False, "ended": session.ended.isoformat(), "end_reason": "closed by the browser"},
    ]


def test_the_proxy_answers_plain_http_with_405(proxy):  # type: ignore[no-untyped-def]
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(proxy.server_address)
        sock.sendall(b"GET /console/websockify HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 405")


def test_a_restarted_proxy_ends_the_sessions_its_predecessor_left_live(db, alice):  # type: ignore[no-untyped-def]
    from consoles.models import ConsoleSession
    from consoles.proxy.records import sessions_end_stale
    from kvmweb.audit.models import AuditEvent
    from tests.factories import make_host, make_vm

    vm = make_vm(make_host("here"), "left", owner=alice)
    event = AuditEvent.objects.create(actor=alice, action="console.session", outcome="accepted")
    live = ConsoleSession.objects.create(vm=vm, user=alice, kind="vnc", audit_event=event)
    serial = ConsoleSession.objects.create(vm=vm, user=alice, kind="serial")
    assert sessions_end_stale(reason="The proxy died.") == 1
    live.refresh_from_db()
    serial.refresh_from_db()
    assert live.ended is not None and live.end_reason == "The proxy died." and serial.ended is None
    event.refresh_from_db()
    assert (event.outcome, event.message) == ("failed", "The proxy died.")
