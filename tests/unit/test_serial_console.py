"""/ws/vms/<uuid>/serial/: who may connect, who may type, one writer per VM, sessions and their audit.

The libvirt stream is the one thing faked (``FakeConsole``, put in place of
``kvmweb.virt.console.open_serial_console`` where consoles.serial calls it): the test driver has no
consoles. Redis is real (the writer key, the close channel); the channel layer is in memory.
The real stream, typing into a real guest, is in tests/integration/test_serial_lab.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from rest_framework.authtoken.models import Token

from consoles import serial
from consoles.models import ConsoleSession, ConsoleShare
from consoles.sessions import sessions_close
from kvmweb.asgi import application
from kvmweb.audit.models import AuditEvent
from kvmweb.virt import InvalidOperation
from kvmweb.virt.console import BUSY, NOT_RUNNING, ConsoleBusy
from tests.factories import make_user, make_vm

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://localhost")
# The domain every test:///default connection starts with.
TEST_DOMAIN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"


class FakeConsole:
    """Stands in for kvmweb.virt.console.SerialConsole: records writes, emits output on demand."""

    def __init__(self, uuid: str, on_data: Callable[[bytes], None], on_closed: Callable[[str], None]) -> None:
        self.uuid = uuid
        self.on_data = on_data
        self.on_closed = on_closed
        self.written = bytearray()
        self.closed = False
        self.wrote = asyncio.Event()

    def write(self, data: bytes) -> None:
        if self.closed:
            raise InvalidOperation("The serial console is closed.")
        self.written += data
        self.wrote.set()

    async def wait_written(self, expected: bytes) -> None:
        """Until the guest has been sent exactly ``expected`` (the consumer writes on the loop)."""
        async with asyncio.timeout(3):
            while bytes(self.written) != expected:
                assert expected.startswith(bytes(self.written)), bytes(self.written)
                self.wrote.clear()
                await self.wrote.wait()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.on_closed("closed")

    # what the guest does
    def output(self, data: bytes) -> None:
        self.on_data(data)

    def end(self, reason: str) -> None:
        self.closed = True
        self.on_closed(reason)


class FakeVirt:
    def __init__(self) -> None:
        self.opened: list[FakeConsole] = []
        self.forced: list[bool] = []
        self.fail: Exception | None = None

    def open(self, target: Any, uuid: str, *, on_data: Any, on_closed: Any, force: bool = False) -> FakeConsole:
        self.forced.append(force)
        if self.fail is not None:
            raise self.fail
        console = FakeConsole(uuid, on_data, on_closed)
        self.opened.append(console)
        return console


@pytest.fixture
def virt(monkeypatch) -> Iterator[FakeVirt]:  # type: ignore[no-untyped-def]
    fake = FakeVirt()
    monkeypatch.setattr(serial, "open_serial_console", fake.open)
    yield fake
    left = serial.hub.open_count()
    serial.hub.__init__()  # type: ignore[misc]  # a failed test must not leave its streams to the next
    assert left == 0, "a serial console stream was left open"


@pytest.fixture
def vm(host, alice):  # type: ignore[no-untyped-def]
    return make_vm(host, "web1", owner=alice)


@pytest.fixture
def carol(vm):  # type: ignore[no-untyped-def]
    """The console of alice's web1 is shared with carol: she may watch it."""
    user = make_user("carol")
    ConsoleShare.objects.create(vm=vm, user=user, created_by=vm.owner)
    return user


@pytest.fixture
def writer_keys(vm) -> Iterator[redis.Redis]:  # type: ignore[no-untyped-def]
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(serial.writer_key(str(vm.uuid)))
    yield client
    client.delete(serial.writer_key(str(vm.uuid)))
    client.close()


async def open_ws(user: Any, vm: Any, query: str = "") -> WebsocketCommunicator:
    headers = [ORIGIN]
    if user is not None:
        key = (await database_sync_to_async(Token.objects.get_or_create)(user=user))[0].key
        query = f"token={key}&{query}" if query else f"token={key}"
    path = f"/ws/vms/{vm.uuid}/serial/" + (f"?{query}" if query else "")
    ws = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await ws.connect()
    assert connected
    return ws


async def control(ws: WebsocketCommunicator) -> dict[str, Any]:
    message = await ws.receive_output(timeout=3)
    assert message["type"] == "websocket.send" and message.get("text") is not None, message
    return json.loads(message["text"])


async def output(ws: WebsocketCommunicator) -> bytes:
    message = await ws.receive_output(timeout=3)
    assert message["type"] == "websocket.send" and message.get("bytes") is not None, message
    return message["bytes"]


async def barrier(ws: WebsocketCommunicator) -> None:
    """A socket's frames are handled in order: once this one is answered, those sent before it were handled."""
    await ws.send_to(text_data="barrier")
    assert (await control(ws))["type"] == "serial.error"


async def closed_with(ws: WebsocketCommunicator) -> int:
    message = await ws.receive_output(timeout=3)
    assert message["type"] == "websocket.close", message
    return message["code"]


def hello(vm: Any, session: int, role: str, *, may_type: bool, writer_present: bool) -> dict[str, Any]:
    return {
        "type": "serial.hello",
        "v": 1,
        "vm": str(vm.uuid),
        "session": session,
        "role": role,
        "may_type": may_type,
        "writer_present": writer_present,
    }


def live_session_ids(vm: Any) -> list[int]:
    return list(ConsoleSession.objects.filter(vm=vm, ended__isnull=True).order_by("pk").values_list("pk", flat=True))


# --- who may connect ------------------------------------------------------------------------------


async def test_anonymous_socket_is_closed_with_4401(virt, vm):  # type: ignore[no-untyped-def]
    ws = await open_ws(None, vm)
    assert await closed_with(ws) == 4401
    assert virt.opened == []


async def test_other_user_gets_4404_and_the_refusal_is_audited(virt, vm, bob):  # type: ignore[no-untyped-def]
    ws = await open_ws(bob, vm)
    assert await closed_with(ws) == 4404
    assert virt.opened == []
    denied = await database_sync_to_async(list)(
        AuditEvent.objects.filter(actor=bob, action="console.open").values_list("outcome", "target_id")
    )
    assert denied == [("denied", str(vm.uuid))]


async def test_owner_connects_by_session_cookie_as_the_writer(virt, vm, alice, writer_keys):  # type: ignore[no-untyped-def]
    client = Client()
    await database_sync_to_async(client.force_login)(alice)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    ws = WebsocketCommunicator(
        application, f"/ws/vms/{vm.uuid}/serial/", headers=[ORIGIN, (b"cookie", cookie.encode())]
    )
    assert (await ws.connect())[0]
    greeting = await control(ws)
    [session] = await database_sync_to_async(live_session_ids)(vm)
    assert greeting == hello(vm, session, "writer", may_type=True, writer_present=True)
    await ws.disconnect()


# --- the owner types, sees output, and the session is recorded ------------------------------------


async def test_owner_types_and_sees_output_and_the_session_is_recorded(virt, vm, alice, writer_keys):  # type: ignore[no-untyped-def]
    ws = await open_ws(alice, vm)
    greeting = await control(ws)
    [session_id] = await database_sync_to_async(live_session_ids)(vm)
    assert greeting == hello(vm, session_id, "writer", may_type=True, writer_present=True)
    [console] = virt.opened
    assert console.uuid == str(vm.uuid) and virt.forced == [False]

    await ws.send_to(bytes_data=b"echo kvmweb-$((6*7))\r")
    await console.wait_written(b"echo kvmweb-$((6*7))\r")
    console.output(b"echo kvmweb-$((6*7))\r\nkvmweb-42\r\n")
    assert await output(ws) == b"echo kvmweb-$((6*7))\r\nkvmweb-42\r\n"
    assert writer_keys.get(serial.writer_key(str(vm.uuid))) is not None

    await ws.disconnect()
    assert console.closed, "the last socket out closes the libvirt stream"
    assert writer_keys.get(serial.writer_key(str(vm.uuid))) is None, "the writer key is released"
    session = await database_sync_to_async(ConsoleSession.objects.select_related("audit_event").get)(pk=session_id)
    assert (session.kind, session.view_only, session.user_id) == ("serial", False, alice.pk)
    assert session.ended is not None and session.end_reason == "The browser closed the console."
    assert (session.bytes_to_client, session.bytes_from_client) == (33, 21)
    event = session.audit_event
    assert (event.action, event.outcome, event.actor_id, event.target_id) == (
        "console.session",
        "succeeded",
        alice.pk,
        str(vm.uuid),
    )
    assert "33 bytes to the browser, 21 bytes typed" in event.message


async def test_new_socket_gets_the_recent_output_first(virt, vm, alice, ada, writer_keys):  # type: ignore[no-untyped-def]
    first = await open_ws(alice, vm)
    await control(first)
    virt.opened[0].output(b"login banner\r\n")
    assert await output(first) == b"login banner\r\n"

    second = await open_ws(ada, vm)
    await control(second)
    assert await output(second) == b"login banner\r\n"
    await first.disconnect()
    await second.disconnect()


# --- shared users only watch ----------------------------------------------------------------------


async def test_shared_user_watches_but_her_keys_never_reach_the_guest(virt, vm, alice, carol, writer_keys):  # type: ignore[no-untyped-def]
    ws = await open_ws(carol, vm)
    greeting = await control(ws)
    [session_id] = await database_sync_to_async(live_session_ids)(vm)
    assert greeting == hello(vm, session_id, "viewer", may_type=False, writer_present=False)
    [console] = virt.opened
    console.output(b"hello\r\n")
    assert await output(ws) == b"hello\r\n"

    await ws.send_to(bytes_data=b"reboot\r")
    await barrier(ws)
    await ws.send_to(text_data=json.dumps({"action": "take"}))
    assert await control(ws) == {
        "type": "serial.error",
        "v": 1,
        "message": "You can watch this console but not type into it.",
    }
    assert bytes(console.written) == b""
    assert writer_keys.get(serial.writer_key(str(vm.uuid))) is None
    await ws.disconnect()
    session = await database_sync_to_async(ConsoleSession.objects.get)(pk=session_id)
    assert (session.view_only, session.bytes_from_client) == (True, 0)


# --- one writer at a time ---------------------------------------------------------------------------


async def test_second_full_access_socket_is_a_viewer_sharing_one_stream(virt, vm, alice, ada, writer_keys):  # type: ignore[no-untyped-def]
    writer = await open_ws(alice, vm)
    assert (await control(writer))["role"] == "writer"
    (first_session,) = await database_sync_to_async(live_session_ids)(vm)
    viewer = await open_ws(ada, vm)
    greeting = await control(viewer)
    second_session = (await database_sync_to_async(live_session_ids)(vm))[1]
    assert greeting == hello(vm, second_session, "viewer", may_type=True, writer_present=True)
    assert len(virt.opened) == 1, "both sockets share one libvirt stream"

    await viewer.send_to(bytes_data=b"ada typed this")
    await barrier(viewer)
    await writer.send_to(bytes_data=b"alice typed this")
    await virt.opened[0].wait_written(b"alice typed this")
    virt.opened[0].output(b"$ ")
    assert await output(writer) == b"$ "
    assert await output(viewer) == b"$ "

    # The writer leaves: the role passes to the full-access viewer.
    await writer.disconnect()
    assert await control(viewer) == {
        "type": "serial.role",
        "v": 1,
        "role": "writer",
        "may_type": True,
        "writer_present": True,
    }
    assert writer_keys.get(serial.writer_key(str(vm.uuid))) is not None
    await viewer.send_to(bytes_data=b"now ada")
    await virt.opened[0].wait_written(b"alice typed thisnow ada")
    await viewer.disconnect()
    assert first_session != second_session


async def test_take_control_moves_the_writer_role(virt, vm, alice, ada, writer_keys):  # type: ignore[no-untyped-def]
    writer = await open_ws(alice, vm)
    await control(writer)
    viewer = await open_ws(ada, vm)
    await control(viewer)

    await viewer.send_to(text_data=json.dumps({"action": "take"}))
    assert await control(viewer) == {
        "type": "serial.role",
        "v": 1,
        "role": "writer",
        "may_type": True,
        "writer_present": True,
    }
    assert await control(writer) == {
        "type": "serial.role",
        "v": 1,
        "role": "viewer",
        "may_type": True,
        "writer_present": True,
    }

    await writer.send_to(bytes_data=b"alice again")
    await barrier(writer)
    await viewer.send_to(bytes_data=b"ada")
    await virt.opened[0].wait_written(b"ada")
    await writer.disconnect()
    await viewer.disconnect()


async def test_writer_in_another_process_makes_this_owner_a_viewer(virt, vm, alice, writer_keys):  # type: ignore[no-untyped-def]
    key = serial.writer_key(str(vm.uuid))
    writer_keys.set(key, "another-process", ex=serial.WRITER_TTL)
    ws = await open_ws(alice, vm)
    greeting = await control(ws)
    [session_id] = await database_sync_to_async(live_session_ids)(vm)
    assert greeting == hello(vm, session_id, "viewer", may_type=True, writer_present=True)

    await ws.send_to(bytes_data=b"ls\r")
    await barrier(ws)
    assert bytes(virt.opened[0].written) == b""
    assert writer_keys.get(key) == b"another-process"
    await ws.disconnect()
    assert writer_keys.get(key) == b"another-process", "a viewer never releases someone else's key"


async def test_writer_whose_key_was_taken_elsewhere_is_refused_at_once(virt, vm, alice, writer_keys):  # type: ignore[no-untyped-def]
    ws = await open_ws(alice, vm)
    assert (await control(ws))["role"] == "writer"
    # Another process takes control (its group message may not have arrived yet): Redis decides.
    writer_keys.set(serial.writer_key(str(vm.uuid)), "another-process", ex=serial.WRITER_TTL)
    await ws.send_to(bytes_data=b"rm -rf /\r")
    assert await control(ws) == {
        "type": "serial.role",
        "v": 1,
        "role": "viewer",
        "may_type": True,
        "writer_present": True,
    }
    assert bytes(virt.opened[0].written) == b""
    await ws.disconnect()


# --- the console cannot open, or stops ------------------------------------------------------------


async def test_vm_not_running_is_told_in_plain_words(virt, vm, alice, writer_keys):  # type: ignore[no-untyped-def]
    virt.fail = InvalidOperation(NOT_RUNNING)
    ws = await open_ws(alice, vm)
    assert await control(ws) == {
        "type": "serial.unavailable",
        "v": 1,
        "reason": "not-running",
        "message": NOT_RUNNING,
        "may_force": False,
    }
    assert await closed_with(ws) == 4409
    assert await database_sync_to_async(ConsoleSession.objects.count)() == 0


async def test_busy_console_offers_owner_a_forced_take_over(virt, vm, alice, writer_keys):  # type: ignore[no-untyped-def]
    virt.fail = ConsoleBusy(BUSY)
    ws = await open_ws(alice, vm)
    message = await control(ws)
    assert (message["reason"], message["may_force"]) == ("busy", True)
    assert await closed_with(ws) == 4409

    virt.fail = None
    forced = await open_ws(alice, vm, "force=1")
    assert (await control(forced))["role"] == "writer"
    assert virt.forced == [False, True]
    await forced.disconnect()


async def test_shared_user_cannot_force(virt, vm, carol, writer_keys):  # type: ignore[no-untyped-def]
    ws = await open_ws(carol, vm, "force=1")
    assert (await control(ws))["role"] == "viewer"
    assert virt.forced == [False]
    await ws.disconnect()


async def test_test_driver_host_says_it_has_no_consoles(vm, alice, writer_keys):  # type: ignore[no-untyped-def]
    # No fake here: the real adapter against test:///default, which has no virDomainOpenConsole.
    domain = await database_sync_to_async(make_vm)(vm.host, "test", owner=alice, uuid=TEST_DOMAIN_UUID)
    ws = await open_ws(alice, domain)
    message = await control(ws)
    assert (message["type"], message["reason"]) == ("serial.unavailable", "error")
    assert message["message"].startswith("This host cannot open serial consoles")
    assert await closed_with(ws) == 4409


async def test_console_that_ends_closes_every_socket_with_the_reason(virt, vm, alice, carol, writer_keys):  # type: ignore[no-untyped-def]
    owner = await open_ws(alice, vm)
    await control(owner)
    viewer = await open_ws(carol, vm)
    await control(viewer)
    virt.opened[0].end("ended")
    expected = {"type": "serial.closed", "v": 1, "reason": "ended", "message": serial.ENDED_MESSAGES["ended"]}
    for ws in (owner, viewer):
        assert await control(ws) == expected
        assert await closed_with(ws) == 4410
        await ws.disconnect()
    reasons = await database_sync_to_async(list)(
        ConsoleSession.objects.filter(vm=vm).values_list("end_reason", flat=True)
    )
    assert reasons == [serial.ENDED_MESSAGES["ended"]] * 2


async def test_revoked_session_is_dropped_and_others_stay(virt, vm, alice, carol, writer_keys):  # type: ignore[no-untyped-def]
    owner = await open_ws(alice, vm)
    await control(owner)
    viewer = await open_ws(carol, vm)
    await control(viewer)
    carol_session = await database_sync_to_async(ConsoleSession.objects.get)(user=carol, ended__isnull=True)

    listeners = await database_sync_to_async(sessions_close)([carol_session.pk], reason="No longer shared with you.")
    assert listeners >= 2
    assert await control(viewer) == {
        "type": "serial.closed",
        "v": 1,
        "reason": "revoked",
        "message": "No longer shared with you.",
    }
    assert await closed_with(viewer) == 4403
    await viewer.disconnect()
    ended = await database_sync_to_async(ConsoleSession.objects.get)(pk=carol_session.pk)
    assert ended.ended is not None and ended.end_reason == "No longer shared with you."

    virt.opened[0].output(b"still here")
    assert await output(owner) == b"still here"
    await owner.disconnect()


async def test_bad_control_message_is_answered(virt, vm, alice, writer_keys):  # type: ignore[no-untyped-def]
    ws = await open_ws(alice, vm)
    await control(ws)
    await ws.send_to(text_data="not json")
    assert await control(ws) == {
        "type": "serial.error",
        "v": 1,
        "message": 'Expected binary keys or {"action": "take"}.',
    }
    await ws.disconnect()
