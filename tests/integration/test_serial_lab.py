"""The serial console for real: the lab's tiny guest runs a busybox shell on ttyS0 (scripts/lab/guest/inittab).

Through the adapter (kvmweb.virt.console, a libvirt console stream) and through the consumer
(/ws/vms/<uuid>/serial/ in-process, with the real Redis and channel layer): type
``echo kvmweb-$((6*7))`` and Enter, and read ``kvmweb-42`` back. Only the shell computes 42: the
echoed command line shows ``$((6*7))``, so the answer proves the keys reached the guest.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from consoles import serial
from consoles.models import ConsoleSession, ConsoleShare
from hosts.models import Host
from kvmweb.asgi import application
from kvmweb.virt import InvalidOperation
from kvmweb.virt.console import NOT_RUNNING, ConsoleBusy, open_serial_console
from tests.factories import make_user, make_vm
from tests.lab.guests import Guest, ensure_guest, remove_guest, unique_guest_name
from tests.lab.hosts import LabHost

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

COMMAND = b"echo kvmweb-$((6*7))\r"
ANSWER = b"kvmweb-42"
ORIGIN = (b"origin", b"http://localhost")


class Screen:
    """What the console printed, with a wait for a given text."""

    def __init__(self) -> None:
        self.text = bytearray()
        self.reasons: list[str] = []
        self.changed = threading.Condition()

    def on_data(self, data: bytes) -> None:
        with self.changed:
            self.text += data
            self.changed.notify_all()

    def on_closed(self, reason: str) -> None:
        with self.changed:
            self.reasons.append(reason)
            self.changed.notify_all()

    def wait_for(self, wanted: bytes, timeout: float = 20) -> bytes:
        with self.changed:
            if not self.changed.wait_for(lambda: wanted in self.text, timeout=timeout):
                raise AssertionError(f"{wanted!r} never appeared on the console; it showed {bytes(self.text)[-500:]!r}")
            return bytes(self.text)

    def wait_closed(self, timeout: float = 10) -> list[str]:
        with self.changed:
            assert self.changed.wait_for(lambda: bool(self.reasons), timeout=timeout), "the stream did not end"
            return list(self.reasons)


def test_typing_through_the_adapter_runs_a_command_in_the_guest(running_tiny_guest: Guest) -> None:
    guest = running_tiny_guest
    screen = Screen()
    console = open_serial_console(guest.host.target, guest.uuid, on_data=screen.on_data, on_closed=screen.on_closed)
    try:
        console.write(COMMAND)
        shown = screen.wait_for(ANSWER)
        assert b"kvmweb-$((6*7))" in shown  # the shell echoed the command line itself
    finally:
        console.close()
    assert screen.wait_closed() == ["closed"]
    assert console.bytes_written == len(COMMAND)


def test_a_second_client_is_refused_until_it_forces_its_way_in(running_tiny_guest: Guest) -> None:
    guest = running_tiny_guest
    first = Screen()
    holder = open_serial_console(guest.host.target, guest.uuid, on_data=first.on_data, on_closed=first.on_closed)
    second = Screen()
    try:
        with pytest.raises(ConsoleBusy, match="Another client is connected"):
            open_serial_console(guest.host.target, guest.uuid, on_data=second.on_data, on_closed=second.on_closed)
        taker = open_serial_console(
            guest.host.target, guest.uuid, on_data=second.on_data, on_closed=second.on_closed, force=True
        )
        assert first.wait_closed() == ["taken"]
        taker.write(COMMAND)
        second.wait_for(ANSWER)
        taker.close()
        assert second.wait_closed() == ["closed"]
    finally:
        holder.close()


@pytest.fixture
def shut_off_guest(lab_host: LabHost) -> Iterator[Guest]:
    name = unique_guest_name("serial-off")
    remove_guest(lab_host, name)
    guest = ensure_guest(lab_host, name, data_disk=False, start=False)
    yield guest
    remove_guest(lab_host, name)


def test_a_shut_off_guest_is_not_running(shut_off_guest: Guest) -> None:
    with pytest.raises(InvalidOperation) as raised:
        open_serial_console(shut_off_guest.host.target, shut_off_guest.uuid, on_data=print, on_closed=print)
    assert raised.value.message == NOT_RUNNING


# --- through the WebSocket consumer ------------------------------------------------------------------


@pytest.fixture
def lab_vm(running_tiny_guest: Guest, lab_host: LabHost) -> dict[str, Any]:
    alice = make_user("alice")
    carol = make_user("carol")
    host = Host.objects.create(name="lab", uri=lab_host.uri, state=Host.State.CONNECTED)
    vm = make_vm(host, running_tiny_guest.name, owner=alice, uuid=running_tiny_guest.uuid)
    ConsoleShare.objects.create(vm=vm, user=carol, created_by=alice)
    return {"vm": vm, "alice": alice, "carol": carol}


async def socket_for(user: Any, vm: Any) -> WebsocketCommunicator:
    key = (await database_sync_to_async(Token.objects.get_or_create)(user=user))[0].key
    ws = WebsocketCommunicator(application, f"/ws/vms/{vm.uuid}/serial/?token={key}", headers=[ORIGIN])
    assert (await ws.connect(timeout=10))[0]
    return ws


async def next_control(ws: WebsocketCommunicator) -> dict[str, Any]:
    """The next JSON frame, skipping the guest's output."""
    while True:
        message = await ws.receive_output(timeout=20)
        if message.get("text") is not None:
            return json.loads(message["text"])


async def read_until(ws: WebsocketCommunicator, wanted: bytes) -> bytes:
    seen = bytearray()
    async with asyncio.timeout(20):
        while wanted not in seen:
            message = await ws.receive_output(timeout=20)
            assert message["type"] == "websocket.send", message
            if message.get("bytes") is not None:
                seen += message["bytes"]
    return bytes(seen)


async def test_owner_types_through_the_websocket_and_a_viewer_sees_it(lab_vm: dict[str, Any]) -> None:
    vm = lab_vm["vm"]
    owner = await socket_for(lab_vm["alice"], vm)
    hello = await next_control(owner)
    assert (hello["type"], hello["role"], hello["may_type"]) == ("serial.hello", "writer", True)
    viewer = await socket_for(lab_vm["carol"], vm)
    hello = await next_control(viewer)
    assert (hello["role"], hello["may_type"], hello["writer_present"]) == ("viewer", False, True)
    assert serial.hub.open_count() == 1

    await owner.send_to(bytes_data=COMMAND)
    assert ANSWER in await read_until(owner, ANSWER)
    assert ANSWER in await read_until(viewer, ANSWER)

    await viewer.disconnect()
    await owner.disconnect()
    assert serial.hub.open_count() == 0
    sessions = await database_sync_to_async(list)(
        ConsoleSession.objects.filter(vm=vm).order_by("pk").values_list("kind", "view_only", "bytes_from_client")
    )
    assert sessions == [("serial", False, len(COMMAND)), ("serial", True, 0)]
    ended = await database_sync_to_async(ConsoleSession.objects.filter(vm=vm, ended__isnull=True).count)()
    assert ended == 0
