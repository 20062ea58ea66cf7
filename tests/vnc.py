"""A small WebSocket + RFB client and a fake VNC server, for the console proxy's tests and bench/console.py.

Independent of the proxy's own code (consoles.proxy): the client speaks RFB 3.8 as noVNC does
(security type None, Raw encoding), over the proxy's WebSocket or straight to a VNC socket.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import threading
import zlib
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
Address = str | Path | tuple[str, int]


class Closed(Exception):
    """The proxy closed the WebSocket: its code and reason."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


def connect_socket(address: Address, timeout: float) -> socket.socket:
    if isinstance(address, tuple):
        sock = socket.create_connection(address, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(address))
    return sock


class Transport(Protocol):
    def send(self, data: bytes) -> None: ...
    def recv_exact(self, n: int) -> bytes: ...
    def close(self) -> None: ...


class RawTransport:
    """Straight to the VNC socket: what the proxy is measured against."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = 0

    @classmethod
    def open(cls, address: Address, timeout: float = 10.0) -> RawTransport:
        return cls(connect_socket(address, timeout))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            data = self.sock.recv(min(n - len(chunks), 1 << 20))
            if not data:
                raise Closed(None, "the VNC server closed the connection")
            chunks += data
        self.received += n
        return bytes(chunks)

    def close(self) -> None:
        self.sock.close()


class WebSocketClient:
    """A minimal RFC 6455 client: binary messages, masked as a browser masks them, pings answered."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self._raw = bytearray(leftover)
        self._data = bytearray()
        self.received = 0

    @classmethod
    def open(
        cls, address: Address, path: str, *, headers: dict[str, str] | None = None, timeout: float = 10.0
    ) -> WebSocketClient:
        sock = connect_socket(address, timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            "Host: localhost",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Protocol: binary",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        response = bytearray()
        while b"\r\n\r\n" not in response:
            data = sock.recv(4096)
            if not data:
                raise Closed(None, f"no upgrade: {bytes(response)!r}")
            response += data
        head, _, rest = bytes(response).partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise Closed(None, f"no upgrade: {status.decode(errors='replace')}")
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest())
        if b"sec-websocket-accept: " + accept.lower() not in head.lower():
            raise Closed(None, "bad Sec-WebSocket-Accept")
        return cls(sock, rest)

    def send(self, data: bytes) -> None:
        self.sock.sendall(self._frame(0x2, data))

    def close(self, code: int = 1000) -> None:
        with suppress(OSError):
            self.sock.sendall(self._frame(0x8, struct.pack(">H", code)))
        self.sock.close()

    def recv_exact(self, n: int) -> bytes:
        while len(self._data) < n:
            self._data += self.recv_message()
        data = bytes(self._data[:n])
        del self._data[:n]
        self.received += n
        return data

    def recv_message(self) -> bytes:
        while True:
            opcode, payload = self._read_frame()
            if opcode in (0x0, 0x2):
                return payload
            if opcode == 0x8:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(code, payload[2:].decode(errors="replace"))
            if opcode == 0x9:
                self.sock.sendall(self._frame(0xA, payload))

    def _read_frame(self) -> tuple[int, bytes]:
        self._fill(2)
        opcode, length = self._raw[0] & 0x0F, self._raw[1] & 0x7F
        offset = 2
        if length == 126:
            self._fill(4)
            length, offset = struct.unpack_from(">H", self._raw, 2)[0], 4
        elif length == 127:
            self._fill(10)
            length, offset = struct.unpack_from(">Q", self._raw, 2)[0], 10
        self._fill(offset + length)
        payload = bytes(self._raw[offset : offset + length])
        del self._raw[: offset + length]
        return opcode, payload

    def _fill(self, n: int) -> None:
        while len(self._raw) < n:
            data = self.sock.recv(262144)
            if not data:
                raise Closed(None, "the connection dropped without a close frame")
            self._raw += data

    @staticmethod
    def _frame(opcode: int, payload: bytes) -> bytes:
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        keystream = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big") if n else b""
        return head + mask + masked


# RFB messages as a client sends them.
def key_event(keysym: int, down: bool) -> bytes:
    return struct.pack(">BBxxI", 4, int(down), keysym)


def pointer_event(buttons: int, x: int, y: int) -> bytes:
    return struct.pack(">BBHH", 5, buttons, x, y)


def client_cut_text(text: bytes) -> bytes:
    return struct.pack(">BxxxI", 6, len(text)) + text


def update_request(incremental: bool, width: int, height: int, x: int = 0, y: int = 0) -> bytes:
    return struct.pack(">BBHHHH", 3, int(incremental), x, y, width, height)


def set_encodings(*encodings: int) -> bytes:
    return struct.pack(">BxH", 2, len(encodings)) + b"".join(struct.pack(">i", e) for e in encodings)


class RFBClient:
    """RFB 3.8, security None, Raw pixels: enough to see a screen and send input."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport
        self.width = self.height = 0
        self.bytes_per_pixel = 4
        self.name = b""

    def handshake(self, *, shared: bool = True) -> None:
        version = self.t.recv_exact(12)
        if not version.startswith(b"RFB 003."):
            raise Closed(None, f"not an RFB server: {version!r}")
        self.t.send(b"RFB 003.008\n")
        count = self.t.recv_exact(1)[0]
        if count == 0:
            size = struct.unpack(">I", self.t.recv_exact(4))[0]
            raise Closed(None, self.t.recv_exact(size).decode(errors="replace"))
        types = self.t.recv_exact(count)
        if 1 not in types:
            raise Closed(None, f"the server wants security {list(types)}, not None")
        self.t.send(b"\x01")
        if struct.unpack(">I", self.t.recv_exact(4))[0] != 0:
            raise Closed(None, "security handshake failed")
        self.t.send(bytes([int(shared)]))
        init = self.t.recv_exact(24)
        self.width, self.height = struct.unpack_from(">HH", init)
        self.bytes_per_pixel = init[4] // 8
        self.name = self.t.recv_exact(struct.unpack_from(">I", init, 20)[0])
        self.t.send(set_encodings(0))  # Raw only: sizes are known without decoding

    def send(self, data: bytes) -> None:
        self.t.send(data)

    def request_update(self, incremental: bool = False) -> None:
        self.t.send(update_request(incremental, self.width, self.height))

    def read_message(self) -> tuple[int, Any]:
        """(message type, its content): 0 a framebuffer update as [(x, y, w, h, encoding, pixels)]."""
        kind = self.t.recv_exact(1)[0]
        if kind == 0:
            count = struct.unpack(">xH", self.t.recv_exact(3))[0]
            rects = []
            for _ in range(count):
                x, y, w, h, encoding = struct.unpack(">HHHHi", self.t.recv_exact(12))
                if encoding == 0:
                    rects.append((x, y, w, h, encoding, self.t.recv_exact(w * h * self.bytes_per_pixel)))
                elif encoding == -224:  # LastRect
                    break
                elif encoding == -223:  # DesktopSize
                    self.width, self.height = w, h
                    rects.append((x, y, w, h, encoding, b""))
                else:
                    raise Closed(None, f"unexpected encoding {encoding}")
            return 0, rects
        if kind == 1:
            _, count = struct.unpack(">xHH", self.t.recv_exact(5))
            return 1, self.t.recv_exact(6 * count)
        if kind == 2:
            return 2, None
        if kind == 3:
            size = struct.unpack(">xxxI", self.t.recv_exact(7))[0]
            return 3, self.t.recv_exact(size)
        raise Closed(None, f"unexpected server message {kind}")

    def read_update(self) -> list[Any]:
        """Read until a framebuffer update arrives; its rectangles."""
        while True:
            kind, content = self.read_message()
            if kind == 0:
                return list(content)

    def close(self) -> None:
        self.t.close()


class FakeVNCServer:
    """An RFB 3.8 server on a unix socket: security None, an 8x4 screen; it records what clients send after ClientInit.

    Answers a FramebufferUpdateRequest that arrives alone with one Raw rectangle of the whole screen.
    """

    WIDTH, HEIGHT = 8, 4
    PIXEL_FORMAT = struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
    NAME = b"fake"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        self.connections = 0
        self.shared_flags: list[int] = []
        self.received = bytearray()
        self.sent = 0  # bytes to clients, all connections
        self.clients: list[socket.socket] = []
        self._changed = threading.Condition()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def update_bytes(self) -> int:
        return 4 + 12 + self.WIDTH * self.HEIGHT * 4

    def handshake_bytes(self) -> int:
        """What one client receives before its first message: version, security, result, ServerInit."""
        return 12 + 2 + 4 + 24 + len(self.NAME)

    def wait_for(self, check: Callable[[FakeVNCServer], bool], timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: check(self), timeout)

    def close(self) -> None:
        self._closing = True
        self.listener.close()
        for client in list(self.clients):
            with suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._changed:
                self.connections += 1
                self.clients.append(client)
                self._changed.notify_all()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _send(self, client: socket.socket, data: bytes) -> None:
        client.sendall(data)
        with self._changed:
            self.sent += len(data)

    def _serve(self, client: socket.socket) -> None:
        try:
            self._send(client, b"RFB 003.008\n")
            _recv_exact(client, 12)
            self._send(client, b"\x01\x01")
            _recv_exact(client, 1)
            self._send(client, struct.pack(">I", 0))
            shared = _recv_exact(client, 1)[0]
            with self._changed:
                self.shared_flags.append(shared)
                self._changed.notify_all()
            self._send(
                client,
                struct.pack(">HH", self.WIDTH, self.HEIGHT)
                + self.PIXEL_FORMAT
                + struct.pack(">I", len(self.NAME))
                + self.NAME,
            )
            pending = bytearray()
            while True:
                data = client.recv(65536)
                if not data:
                    return
                with self._changed:
                    self.received += data
                    self._changed.notify_all()
                pending += data
                while (size := _message_size(pending)) and len(pending) >= size:
                    if pending[0] == 3:
                        pixels = bytes(self.WIDTH * self.HEIGHT * 4)
                        rect = struct.pack(">HHHHi", 0, 0, self.WIDTH, self.HEIGHT, 0) + pixels
                        self._send(client, struct.pack(">BxH", 0, 1) + rect)
                    del pending[:size]
        except OSError:
            return
        finally:
            client.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return bytes(data)


def _message_size(buf: bytearray) -> int:
    """The size of the client message starting `buf` (the ones tests/vnc.py sends), 0 while unknown."""
    if not buf:
        return 0
    kind = buf[0]
    if kind == 2:
        return 4 + 4 * struct.unpack_from(">H", buf, 2)[0] if len(buf) >= 4 else 0
    if kind == 6:
        return 8 + struct.unpack_from(">I", buf, 4)[0] if len(buf) >= 8 else 0
    return {0: 20, 3: 10, 4: 8, 5: 6}.get(kind, len(buf))


def reforge(token: str, **changes: Any) -> str:
    """A console token with its payload edited and the old signature kept: what one can build without the key."""
    payload, stamp_and_signature = token.split(":", 1)
    compressed = payload.startswith(".")
    body = payload.lstrip(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    data = json.loads(zlib.decompress(raw) if compressed else raw)
    data.update(changes)
    encoded = json.dumps(data, separators=(",", ":")).encode()
    encoded = zlib.compress(encoded) if compressed else encoded
    edited = base64.urlsafe_b64encode(encoded).decode().rstrip("=")
    return f"{'.' if compressed else ''}{edited}:{stamp_and_signature}"
