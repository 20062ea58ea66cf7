"""/ws/vms/<uuid>/serial/: a VM's serial console in xterm.js, over the libvirt console stream.

Protocol (documented for static/js/serial.js):

- Terminal bytes travel as **binary frames**, both ways: the guest's output to the browser, and the
  writer's keys to the guest. Nothing is base64'd or re-encoded; bytes are bytes.
- Control messages are **JSON text frames** with ``"type"`` and ``"v": 1``:
  - ``serial.hello`` ``{vm, session, role: "writer"|"viewer", may_type, writer_present}``, once connected;
  - ``serial.role`` ``{role, may_type, writer_present}`` when the writer changes;
  - ``serial.unavailable`` ``{reason: "not-running"|"no-serial"|"busy"|"error", message, may_force}``
    when the console cannot open (then close 4409);
  - ``serial.closed`` ``{reason, message}`` before the server closes: ``ended``/``taken``/``lost``
    (the stream ended, close 4410) or ``revoked`` (access revoked or an administrator ended it, 4403).
  - The browser sends ``{"action": "take"}`` to take control (owners and administrators only).
- Close codes: 4401 not logged in, 4404 no such VM (or not yours), 4409 unavailable, 4410 ended, 4403 revoked.
- ``?force=1`` (owners and administrators) opens the console even if another client holds it.

Only the writer's keys reach the guest: the role is checked against the Redis writer key for every
frame, so a socket that lost control in another process is refused at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from ipaddress import ip_address
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from consoles import serial
from consoles.services import console_vm
from consoles.sessions import close_channel
from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.errors import NotVisible
from kvmweb.virt import InvalidOperation, VirtError
from kvmweb.virt.console import ConsoleBusy, NoSerialConsole

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_REVOKED = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_UNAVAILABLE = 4409
CLOSE_ENDED = 4410
# A browser that cannot keep up is dropped rather than buffered without bound.
MAX_QUEUED = 4 * 1024 * 1024


class SerialConsoleConsumer(AsyncWebsocketConsumer):
    shared: serial.SharedConsole | None = None
    session_id: int | None = None
    role = "viewer"

    async def connect(self) -> None:
        user = self.scope.get("user")
        # Accept before closing: a refused handshake reaches the browser as a bare 1006.
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        self.actor = Actor(user=user, ip=_scope_ip(self.scope))
        self.vm_uuid = str(self.scope["url_route"]["kwargs"]["uuid"])
        try:
            self.vm, self.may_type = await database_sync_to_async(_lookup)(self.actor, user, self.vm_uuid)
        except NotVisible:
            await self._refuse(CLOSE_NOT_FOUND)
            return
        await self.accept()
        self.holder = f"{self.channel_name}:{secrets.token_hex(4)}"
        self.bytes_to_client = 0
        self.bytes_from_client = 0
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.queued = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.redis = serial.redis_client()
        self.writer = serial.WriterLock(self.redis, self.vm_uuid, self.holder)
        force = self.may_type and parse_qs(self.scope.get("query_string", b"").decode()).get("force") == ["1"]
        try:
            self.shared, replay = await serial.hub.attach(self.vm.host.virt_target(), self.vm_uuid, self, force=force)
        except VirtError as exc:
            await self._unavailable(exc)
            return
        # Queued now, before any await, so output that arrives meanwhile comes after it.
        if replay:
            self.serial_data(replay)
        # Listen for "close these sessions" before the row exists, so no revocation slips between.
        self.pubsub = self.redis.pubsub()
        await self.pubsub.subscribe(close_channel())
        await _subscribed(self.pubsub)
        session = await database_sync_to_async(serial.serial_session_start)(
            actor=self.actor, vm=self.vm, view_only=not self.may_type
        )
        self.session_id = session.pk
        await self.channel_layer.group_add(serial.serial_group(self.vm_uuid), self.channel_name)
        if self.may_type and await self.writer.claim():
            self.role = "writer"
        await self._send_control(
            "serial.hello",
            vm=self.vm_uuid,
            session=self.session_id,
            role=self.role,
            may_type=self.may_type,
            writer_present=self.role == "writer" or await self._writer_present(),
        )
        self.tasks = [
            asyncio.create_task(self._pump()),
            asyncio.create_task(self._listen_for_close()),
            asyncio.create_task(self._keep_role()),
        ]

    async def disconnect(self, code: int) -> None:
        tasks = getattr(self, "tasks", [])
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.shared is not None:
            serial.hub.detach(self.shared, self)
            self.shared = None
        if self.session_id is not None:
            await self.channel_layer.group_discard(serial.serial_group(self.vm_uuid), self.channel_name)
            if self.role == "writer" and await self.writer.release():
                await self.channel_layer.group_send(serial.serial_group(self.vm_uuid), {"type": "serial.released"})
            await database_sync_to_async(serial.serial_session_end)(
                session_id=self.session_id,
                bytes_to_client=self.bytes_to_client,
                bytes_from_client=self.bytes_from_client,
                reason=getattr(self, "end_reason", "The browser closed the console."),
            )
            self.session_id = None
        if hasattr(self, "pubsub"):
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()
        if hasattr(self, "redis"):
            await self.redis.aclose()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.shared is None:
            return
        if bytes_data is not None:
            await self._keys(bytes_data)
            return
        try:
            content = json.loads(text_data or "")
        except ValueError:
            content = None
        if isinstance(content, dict) and content.get("action") == "take":
            await self._take()
        else:
            await self._send_control("serial.error", message='Expected binary keys or {"action": "take"}.')

    # Input and roles.

    async def _keys(self, data: bytes) -> None:
        if not self.may_type:
            return  # people the console is shared with only watch: their keys never reach the guest
        if self.role != "writer" or not await self.writer.holds():
            if self.role == "writer":
                await self._set_role("viewer")
            return
        assert self.shared is not None
        try:
            self.shared.write(data)
        except InvalidOperation as exc:
            await self._send_control("serial.error", message=exc.message)
            return
        self.bytes_from_client += len(data)

    async def _take(self) -> None:
        if not self.may_type:
            await self._send_control("serial.error", message="You can watch this console but not type into it.")
            return
        await self.writer.take()
        await self._set_role("writer")
        await self.channel_layer.group_send(
            serial.serial_group(self.vm_uuid), {"type": "serial.writer", "holder": self.holder}
        )

    async def _set_role(self, role: str) -> None:
        self.role = role
        await self._send_control(
            "serial.role",
            role=role,
            may_type=self.may_type,
            writer_present=role == "writer" or await self._writer_present(),
        )

    async def _writer_present(self) -> bool:
        return bool(await self.redis.exists(self.writer.key))

    async def serial_writer(self, event: dict[str, Any]) -> None:
        """Someone took control (in any process)."""
        if event["holder"] == self.holder:
            return
        await self._set_role("viewer")

    async def serial_released(self, event: dict[str, Any]) -> None:
        """The writer left: the first full-access viewer to claim the key takes over."""
        if self.role == "writer" or not self.may_type:
            await self._set_role(self.role)
            return
        if await self.writer.claim():
            await self._set_role("writer")
            await self.channel_layer.group_send(
                serial.serial_group(self.vm_uuid), {"type": "serial.writer", "holder": self.holder}
            )
        else:
            await self._set_role("viewer")

    async def _keep_role(self) -> None:
        """Refresh the writer key; a full-access viewer claims it once it lapses (a writer process died)."""
        while True:
            await asyncio.sleep(serial.WRITER_TTL / 3)
            if self.role == "writer":
                if not await self.writer.refresh():
                    await self._set_role("viewer")
            elif self.may_type and await self.writer.claim():
                await self._set_role("writer")

    # Output.

    def serial_data(self, data: bytes) -> None:
        """Guest output from the shared stream (on the loop); sent in order by `_pump`."""
        self.queued += len(data)
        if self.queued > MAX_QUEUED:
            self.end_reason = "The browser did not keep up with the console's output."
            self.outbox.put_nowait(None)
            return
        self.outbox.put_nowait(data)

    def serial_ended(self, reason: str) -> None:
        self.shared = None
        self.end_reason = serial.ENDED_MESSAGES.get(reason, serial.ENDED_MESSAGES["lost"])
        self.stream_reason = reason
        self.outbox.put_nowait(None)

    async def _pump(self) -> None:
        while True:
            data = await self.outbox.get()
            if data is None:
                break
            self.queued -= len(data)
            self.bytes_to_client += len(data)
            await self.send(bytes_data=data)
        reason = getattr(self, "stream_reason", "lost")
        await self._send_control("serial.closed", reason=reason, message=self.end_reason)
        await self.close(code=CLOSE_ENDED)

    async def _listen_for_close(self) -> None:
        async for message in self.pubsub.listen():
            if message.get("type") != "message":
                continue
            try:
                body = json.loads(message["data"])
                ids = {int(i) for i in body.get("sessions", [])}
            except (ValueError, TypeError, AttributeError):
                continue
            if self.session_id in ids:
                reason = str(body.get("reason") or "Your access to this console was revoked.")
                self.end_reason = reason
                await self._send_control("serial.closed", reason="revoked", message=reason)
                await self.close(code=CLOSE_REVOKED)
                return

    # Helpers.

    async def _refuse(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    async def _unavailable(self, exc: VirtError) -> None:
        if isinstance(exc, ConsoleBusy):
            reason = "busy"
        elif isinstance(exc, NoSerialConsole):
            reason = "no-serial"
        elif isinstance(exc, InvalidOperation):
            reason = "not-running"
        else:
            reason = "error"
        await self._send_control(
            "serial.unavailable", reason=reason, message=exc.message, may_force=reason == "busy" and self.may_type
        )
        await self.close(code=CLOSE_UNAVAILABLE)

    async def _send_control(self, kind: str, **fields: Any) -> None:
        await self.send(text_data=json.dumps({"type": kind, "v": 1, **fields}))


def _lookup(actor: Actor, user: Any, uuid: str) -> tuple[Any, bool]:
    vm = console_vm(actor=actor, uuid=uuid)
    return vm, access.console_may_type(user, vm)


async def _subscribed(pubsub: Any, timeout: float = 5.0) -> None:
    """Wait for Redis to confirm the subscription: a close published after that reaches us."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        message = await pubsub.get_message(timeout=max(0.0, deadline - loop.time()))
        if message is not None and message.get("type") == "subscribe":
            return
    raise TimeoutError("Redis did not confirm the console close channel subscription.")


def _scope_ip(scope: dict[str, Any]) -> str | None:
    client = scope.get("client") or (None,)
    try:
        return str(ip_address(client[0])) if client[0] else None
    except ValueError:
        return None
