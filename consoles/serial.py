"""The serial console's server side: one libvirt stream per VM per process, one writer per VM, sessions.

- ``SerialHub`` (one per process, ``hub``): libvirt lets one client hold a domain's console, so
  every socket of this process on the same VM shares one stream (``attach``/``detach``); output
  is fanned out to all of them, and the last ``SCROLLBACK`` bytes are replayed to a newcomer.
- ``WriterLock``: at most one socket types into a VM's console, across every process. The
  writer holds a Redis key (SET NX, expiry refreshed while connected); ``take`` moves it.
- ``serial_session_start`` / ``serial_session_end``: the ConsoleSession row and its audit event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from consoles.messages import session_publish
from consoles.models import ConsoleSession
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record
from kvmweb.virt import HostTarget
from kvmweb.virt.console import SerialConsole, open_serial_console

log = logging.getLogger(__name__)

SCROLLBACK = 32 * 1024
WRITER_TTL = 30  # seconds; the writer refreshes its key every WRITER_TTL / 3
AUDIT_ACTION = "console.session"

# Why a stream ended, in the words the page shows (reasons from kvmweb.virt.console).
ENDED_MESSAGES = {
    "closed": "The serial console was closed.",
    "ended": "The serial console ended: the virtual machine stopped.",
    "taken": "Another client took the serial console over (virsh console, or another kvmweb server).",
    "lost": "The connection to the host was lost.",
}


def serial_group(vm_uuid: str) -> str:
    """Channels group of every socket on one VM's serial console, in any process (writer changes)."""
    return f"console.serial.{vm_uuid}"


def writer_key(vm_uuid: str) -> str:
    return f"{settings.KVMWEB_CHANNEL_PREFIX}:console:serial:writer:{vm_uuid}"


# --- one stream per VM in this process -----------------------------------------------------------


class Subscriber(Protocol):
    """A socket on a shared console; both are called on the event loop's thread."""

    def serial_data(self, data: bytes) -> None: ...

    def serial_ended(self, reason: str) -> None: ...


@dataclass(eq=False)
class SharedConsole:
    vm_uuid: str
    loop: asyncio.AbstractEventLoop
    console: SerialConsole | None = None
    subscribers: set[Subscriber] = field(default_factory=set)
    scrollback: bytearray = field(default_factory=bytearray)
    reason: str | None = None

    def write(self, data: bytes) -> None:
        assert self.console is not None
        self.console.write(data)

    # From the reader thread.

    def on_data(self, data: bytes) -> None:
        self._on_loop(self._deliver, data)

    def on_closed(self, reason: str) -> None:
        self._on_loop(self._ended, reason)

    def _on_loop(self, func: Callable[[Any], None], arg: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening any more
            self.loop.call_soon_threadsafe(func, arg)

    # On the loop.

    def _deliver(self, data: bytes) -> None:
        self.scrollback += data
        del self.scrollback[:-SCROLLBACK]
        for subscriber in list(self.subscribers):
            subscriber.serial_data(data)

    def _ended(self, reason: str) -> None:
        self.reason = reason
        hub.forget(self)
        for subscriber in list(self.subscribers):
            subscriber.serial_ended(reason)
        self.subscribers.clear()


class SerialHub:
    """The serial consoles this process holds open, by VM UUID."""

    def __init__(self) -> None:
        self._consoles: dict[str, SharedConsole] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, vm_uuid: str) -> asyncio.Lock:
        return self._locks.setdefault(vm_uuid, asyncio.Lock())

    def get(self, vm_uuid: str) -> SharedConsole | None:
        return self._consoles.get(vm_uuid)

    async def attach(
        self, target: HostTarget, vm_uuid: str, subscriber: Subscriber, *, force: bool = False
    ) -> tuple[SharedConsole, bytes]:
        """Join the VM's shared stream, opening it (in a thread) if this process has none.

        Returns the stream and the recent output to replay. Raises what ``open_serial_console`` raises.
        """
        loop = asyncio.get_running_loop()
        lock = self._lock(vm_uuid)
        async with lock:
            shared = self._consoles.get(vm_uuid)
            if shared is None or shared.loop is not loop or shared.reason is not None:
                shared = SharedConsole(vm_uuid=vm_uuid, loop=loop)
                shared.console = await asyncio.to_thread(
                    open_serial_console,
                    target,
                    vm_uuid,
                    on_data=shared.on_data,
                    on_closed=shared.on_closed,
                    force=force,
                )
                self._consoles[vm_uuid] = shared
            shared.subscribers.add(subscriber)
            if shared.reason is not None:  # it ended while opening, before anyone was there to hear it
                self.forget(shared)
                loop.call_soon(subscriber.serial_ended, shared.reason)
            return shared, bytes(shared.scrollback)

    def detach(self, shared: SharedConsole, subscriber: Subscriber) -> None:
        """Leave; the last one out closes the stream (without waiting for libvirt)."""
        shared.subscribers.discard(subscriber)
        if shared.subscribers:
            return
        self.forget(shared)
        if shared.console is not None:
            shared.console.close()

    def forget(self, shared: SharedConsole) -> None:
        if self._consoles.get(shared.vm_uuid) is shared:
            del self._consoles[shared.vm_uuid]

    def open_count(self) -> int:
        return len(self._consoles)


hub = SerialHub()


# --- one writer per VM, across processes ------------------------------------------------------------

_REFRESH = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class WriterLock:
    """The Redis key naming the one socket that may type into a VM's serial console."""

    def __init__(self, client: aioredis.Redis, vm_uuid: str, holder: str) -> None:
        self.client = client
        self.key = writer_key(vm_uuid)
        self.holder = holder

    async def claim(self) -> bool:
        """Become the writer if nobody is."""
        return bool(await self.client.set(self.key, self.holder, nx=True, ex=WRITER_TTL))

    async def take(self) -> None:
        """Become the writer whoever was (the page's "Take control")."""
        await self.client.set(self.key, self.holder, ex=WRITER_TTL)

    async def holds(self) -> bool:
        value = await self.client.get(self.key)
        return _text(value) == self.holder

    async def refresh(self) -> bool:
        """Keep the key alive; False if someone else took it meanwhile (or it lapsed)."""
        return bool(await self.client.eval(_REFRESH, 1, self.key, self.holder, WRITER_TTL))

    async def release(self) -> bool:
        return bool(await self.client.eval(_RELEASE, 1, self.key, self.holder))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def redis_client() -> aioredis.Redis:
    return aioredis.Redis.from_url(settings.REDIS_URL)


# --- sessions and the audit trail ---------------------------------------------------------------


def serial_session_start(*, actor: Actor, vm: Any, view_only: bool) -> ConsoleSession:
    """A live ConsoleSession (kind serial) with its "console.session" audit event; published on commit."""
    user: Any = actor.user if actor.user is not None and actor.user.is_authenticated else None
    with transaction.atomic():
        event = audit_record(
            actor=actor,
            action=AUDIT_ACTION,
            target=vm.as_target(),
            outcome=AuditEvent.Outcome.ACCEPTED,
            message=f"Serial console opened{' (view only)' if view_only else ''}.",
        )
        session = ConsoleSession.objects.create(
            vm=vm,
            user=user,
            kind=ConsoleSession.Kind.SERIAL,
            view_only=view_only,
            client_ip=actor.ip,
            audit_event=event,
        )
        session_publish(session)
    return session


def serial_session_end(*, session_id: int, bytes_to_client: int, bytes_from_client: int, reason: str) -> bool:
    """Close the session once (a conditional update) and complete its audit event; False if already ended."""
    now = timezone.now()
    with transaction.atomic():
        updated = ConsoleSession.objects.filter(pk=session_id, ended__isnull=True).update(
            ended=now, bytes_to_client=bytes_to_client, bytes_from_client=bytes_from_client, end_reason=reason[:255]
        )
        if not updated:
            return False
        session = ConsoleSession.objects.select_related("vm", "user").get(pk=session_id)
        seconds = (now - session.started).total_seconds()
        if session.audit_event_id is not None:
            AuditEvent.objects.filter(pk=session.audit_event_id).update(
                outcome=AuditEvent.Outcome.SUCCEEDED,
                message=(
                    f"Serial console{' (view only)' if session.view_only else ''}: {seconds:.0f} s, "
                    f"{bytes_to_client} bytes to the browser, {bytes_from_client} bytes typed. {reason}"
                )[:2000],
            )
        session_publish(session)
    return True
