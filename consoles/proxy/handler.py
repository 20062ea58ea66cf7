"""One browser's console connection: the token, the target, the session record, and the relay.

websockify's own handler connects every client to one global target chosen by a token plugin; this one
is chosen per connection from a signed, single-use token (consoles.tokens), and it owns its relay so it
can count bytes, filter a viewer's input (consoles.proxy.rfb) and be closed from outside (a revoked share,
an administrator) through a wake-up socket.

The token is checked after the WebSocket upgrade, so a refusal reaches the page as a close code and a
reason it can show, not as a bare failed handshake. A refused token never opens a connection to the guest.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from django.http import HttpRequest
from websockify.websocket import WebSocketWantReadError, WebSocketWantWriteError
from websockify.websocketproxy import ProxyRequestHandler
from websockify.websockifyserver import CompatibleWebSocket

from consoles import tokens
from consoles.proxy import records
from consoles.proxy.rfb import ProtocolViolation, ViewOnlyFilter
from kvmweb.actors import client_ip

if TYPE_CHECKING:
    from consoles.proxy.server import ConsoleProxyServer

log = logging.getLogger("kvmweb.consoles.proxy")

# WebSocket close codes the console page understands (4000-4999 are the application's own).
CLOSE_NORMAL = 1000
CLOSE_VIOLATION = 1008  # a viewer sent a message the filter cannot follow
CLOSE_REFUSED = 4001  # the token is tampered, expired or used, or its holder lost access: get a new one
CLOSE_UNREACHABLE = 4002  # the guest's display does not answer (shut off, moved)
CLOSE_ENDED = 4003  # kvmweb ended the session: share revoked, ownership changed, an administrator, a restart

CONNECT_TIMEOUT = 5.0
DB_ANNOUNCE_WAIT = 5.0
WANT = (WebSocketWantReadError, WebSocketWantWriteError, BlockingIOError, InterruptedError)


class BrowserSocket(CompatibleWebSocket):
    """websockify's WebSocket, reading 64 KiB at a time instead of 4 KiB (bench/console.py: uploads 63 → 292 MiB/s).

    No TLS here (nginx terminates it), so the SSL-pending loop of the original is not needed.
    """

    def _recv(self) -> bool:
        try:
            data = self.socket.recv(65536)
        except (BlockingIOError, InterruptedError):
            raise WebSocketWantReadError from None
        if not data:
            return False
        self._recv_buffer += data
        return True


class ConsoleProxyHandler(ProxyRequestHandler):
    server: ConsoleProxyServer
    SocketClass = BrowserSocket
    # The HTTP upgrade must arrive within this; once upgraded, the sockets are non-blocking.
    timeout = 30

    def setup(self) -> None:
        super().setup()
        self.bytes_to_client = 0
        self.bytes_from_client = 0
        self.end_reason = ""
        self._stop: tuple[int, str] | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        if self.connection.family != socket.AF_UNIX:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self) -> None:
        with suppress(OSError):
            super().finish()
        self._wake_r.close()
        self._wake_w.close()

    # Handled after the upgrade, in new_websocket_client.
    def validate_connection(self) -> None:
        pass

    def auth_connection(self) -> None:
        pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("console proxy: " + format, *args)

    def handle_websocket(self) -> None:
        # websockify's version also logs the path, which holds the token.
        self.send_parts: list[bytes] = []
        self.recv_part = None
        self.start_time = int(time.time() * 1000)
        try:
            self.new_websocket_client()
        except self.CClose as exc:
            code, reason = exc.args
            with suppress(OSError, *WANT):
                self.send_close(code, _close_reason(reason))

    def stop(self, code: int, reason: str) -> None:
        """End this session from another thread (revoked, ended by an administrator, the proxy stopping)."""
        self._stop = (code, reason)
        with suppress(OSError):
            self._wake_w.send(b"x")

    def new_websocket_client(self) -> None:
        self.connection.setblocking(False)
        grant = self._redeem()
        target = self._connect(grant.target)
        try:
            live = self.server.db.run(records.session_open, grant=grant, ip=self.client_ip())
        except records.AccessGone as exc:
            target.close()
            raise self.CClose(CLOSE_REFUSED, str(exc)) from None
        except BaseException:
            target.close()
            raise
        log.info(
            "console session %s: %s on %s (%s) from %s",
            live.id,
            live.user,
            live.vm,
            records.mode(live.view_only),
            self.client_ip(),
        )
        self.server.sessions.add(live.id, self)
        announced = self.server.db.submit(records.session_announce, live)
        try:
            self._relay(target, ViewOnlyFilter() if grant.view_only else None)
        except self.CClose:
            raise
        except OSError as exc:
            self.end_reason = f"connection lost: {exc.strerror or exc}"
            raise self.CClose(1011, "The connection was lost.") from None
        except Exception as exc:
            log.exception("console session %s failed", live.id)
            self.end_reason = self.end_reason or f"proxy error: {exc}"
            raise self.CClose(1011, "The console proxy failed.") from None
        finally:
            self.server.sessions.remove(live.id)
            with suppress(OSError):
                target.close()
            ended = self.server.db.run(
                records.session_close,
                live,
                bytes_to_client=self.bytes_to_client,
                bytes_from_client=self.bytes_from_client,
                reason=self.end_reason or "closed",
            )
            with suppress(Exception):
                announced.result(DB_ANNOUNCE_WAIT)  # pages hear the start before the end
            self.server.db.submit(records.session_announce, live, ended=ended, reason=self.end_reason or "closed")
            log.info(
                "console session %s ended (%s): %d bytes to the browser, %d from it",
                live.id,
                self.end_reason,
                self.bytes_to_client,
                self.bytes_from_client,
            )

    def client_ip(self) -> str | None:
        """The browser's address, as the web app reads it: nginx's X-Real-IP, believed from a trusted peer only."""
        request = HttpRequest()
        peer = self.client_address[0] if isinstance(self.client_address, tuple) else ""
        request.META = {"REMOTE_ADDR": peer, "HTTP_X_REAL_IP": self.headers.get("X-Real-IP", "")}
        return client_ip(request)

    def _redeem(self) -> tokens.ConsoleGrant:
        token = (parse_qs(urlsplit(self.path).query).get("token") or [""])[0]
        if not token:
            raise self.CClose(CLOSE_REFUSED, "This console link has no token.")
        try:
            grant = tokens.verify(token)
        except tokens.TokenRefused as exc:
            log.info("console token refused (%s) from %s", exc.reason, self.client_ip())
            raise self.CClose(CLOSE_REFUSED, exc.message) from None
        if grant.kind != "vnc":
            raise self.CClose(CLOSE_REFUSED, "This link is not for the graphical console.")
        try:
            tokens.redeem(grant, self.server.redis)
        except tokens.TokenRefused as exc:
            log.info("console token refused (%s) for user %s on %s", exc.reason, grant.user, grant.vm)
            self.server.db.run(records.session_refused, grant=grant, ip=self.client_ip(), message=exc.message)
            raise self.CClose(CLOSE_REFUSED, exc.message) from None
        return grant

    def _connect(self, target: dict[str, Any]) -> socket.socket:
        try:
            if "socket" in target:
                sock = _connect_unix(str(target["socket"]))
            else:
                sock = socket.create_connection((str(target["host"]), int(target["port"])), timeout=CONNECT_TIMEOUT)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            log.info("console target %s unreachable: %s", target, exc)
            raise self.CClose(CLOSE_UNREACHABLE, _unreachable(target, exc)) from None
        sock.setblocking(False)
        return sock

    def _relay(self, target: socket.socket, viewer: ViewOnlyFilter | None) -> None:
        """Copy both ways until one side closes or someone stops the session; count the bytes."""
        to_client: list[bytes] = []
        to_target: list[bytes] = []
        client_pending = False
        heartbeat = self.server.heartbeat
        next_ping = time.monotonic() + heartbeat
        while True:
            # Backpressure: read from a side only when what it sent before has gone out to the other.
            readers: list[Any] = [self._wake_r]
            if not to_target:
                readers.append(self.request)
            if not (to_client or client_pending):
                readers.append(target)
            writers: list[Any] = []
            if to_target:
                writers.append(target)
            if to_client or client_pending:
                writers.append(self.request)
            ready, writable, _ = select.select(readers, writers, [], heartbeat)

            if self._wake_r in ready or self._stop is not None:
                code, reason = self._stop or (CLOSE_ENDED, "ended")
                self.end_reason = reason
                raise self.CClose(code, reason)
            if time.monotonic() >= next_ping:
                next_ping = time.monotonic() + heartbeat
                with suppress(*WANT):
                    self.send_ping()  # keeps nginx and other idle timeouts from cutting a still screen

            if self.request in writable:
                client_pending = self.send_frames(to_client)
                to_client = []

            if self.request in ready:
                try:
                    frames, closed = self.recv_frames()
                except OSError:
                    if not getattr(self.request, "_received_close", False):
                        raise
                    # The browser said goodbye and left before our answering close frame could reach it.
                    self.end_reason = "closed by the browser"
                    raise self.CClose(CLOSE_NORMAL, "") from None
                for frame in frames:
                    self.bytes_from_client += len(frame)
                    if viewer is not None:
                        try:
                            frame = viewer.from_client(frame)
                        except ProtocolViolation as exc:
                            self.end_reason = f"view-only client refused: {exc}"
                            raise self.CClose(
                                CLOSE_VIOLATION, "This viewer sent input the console does not accept."
                            ) from None
                    if frame:
                        to_target.append(frame)
                if to_target:
                    self._send_target(target, to_target)
                if closed:
                    self._flush_target(target, to_target)
                    self.end_reason = "closed by the browser"
                    raise self.CClose(closed["code"] or CLOSE_NORMAL, closed["reason"] or "")

            if target in writable and to_target:
                self._send_target(target, to_target)

            if target in ready:
                try:
                    data = target.recv(self.buffer_size)
                except WANT:
                    data = None
                if data == b"":
                    if to_client or client_pending:
                        self._flush_client(to_client)
                    self.end_reason = "the guest's display closed"
                    raise self.CClose(CLOSE_NORMAL, "The guest's display closed.")
                if data:
                    if viewer is not None:
                        viewer.from_server(data)
                    self.bytes_to_client += len(data)
                    to_client.append(data)
                    client_pending = self.send_frames(to_client)
                    to_client = []

    @staticmethod
    def _send_target(target: socket.socket, queue: list[bytes]) -> None:
        while queue:
            try:
                sent = target.send(queue[0])
            except WANT:
                return
            if sent < len(queue[0]):
                queue[0] = queue[0][sent:]
                return
            queue.pop(0)

    @staticmethod
    def _flush_target(target: socket.socket, queue: list[bytes]) -> None:
        """What the browser sent before closing still reaches the guest (a last key release), within a second."""
        deadline = time.monotonic() + 1.0
        while queue and time.monotonic() < deadline:
            select.select([], [target], [], 0.1)
            with suppress(OSError):
                ConsoleProxyHandler._send_target(target, queue)

    def _flush_client(self, queue: list[bytes]) -> None:
        deadline = time.monotonic() + 1.0
        pending = self.send_frames(queue)
        while pending and time.monotonic() < deadline:
            select.select([], [self.request], [], 0.1)
            pending = self.send_frames()


def _connect_unix(path: str) -> socket.socket:
    """Connect to a unix socket. A full listen backlog (QEMU's is small) answers EAGAIN at once rather than
    waiting as TCP does: try again, briefly, until the connect timeout."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    delay = 0.002
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() + delay > deadline:
                raise
        except BaseException:
            sock.close()
            raise
        time.sleep(delay)  # backing off from a full backlog; there is nothing to wait on
        delay = min(delay * 2, 0.1)


def _unreachable(target: dict[str, Any], exc: OSError) -> str:
    if "socket" in target:
        return "The guest's display does not answer; is the VM running?"
    # A remote host: most often a firewall, or a console address the proxy cannot route to.
    why = exc.strerror or str(exc) or type(exc).__name__
    return f"Cannot reach {target['host']}:{target['port']} ({why}): check the host's console address and firewall."


def _close_reason(reason: str) -> str:
    """A close frame's reason is at most 123 bytes of UTF-8."""
    data = reason.encode()[:123]
    return data.decode(errors="ignore")
