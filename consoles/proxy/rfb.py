"""The view-only filter: a client's RFB stream with its input removed.

noVNC's `viewOnly` is only a browser setting, so the proxy enforces it: it follows the client's side of
the RFB handshake (ProtocolVersion, security, ClientInit), then reads the typed client messages and drops
KeyEvent, PointerEvent, ClientCutText (and the other ways to act on the guest: QEMU's extended key
event, xvp power control, SetDesktopSize). Everything else (pixel format, encodings, update requests,
continuous updates, fences, QEMU audio) passes. A message it cannot size is a protocol violation: the
connection is closed rather than risk losing track of where messages start.

Pure and synchronous: feed it byte chunks split anywhere, it returns the bytes to forward.
RFB 3.8: https://github.com/rfbproto/rfbproto/blob/master/rfbproto.rst
"""

from __future__ import annotations

import re
import struct

# Client message types.
SET_PIXEL_FORMAT = 0
SET_ENCODINGS = 2
FRAMEBUFFER_UPDATE_REQUEST = 3
KEY_EVENT = 4
POINTER_EVENT = 5
CLIENT_CUT_TEXT = 6
ENABLE_CONTINUOUS_UPDATES = 150
CLIENT_FENCE = 248
XVP = 250
SET_DESKTOP_SIZE = 251
QEMU = 255
QEMU_EXTENDED_KEY_EVENT = 0
QEMU_AUDIO = 1

# Security types whose client side we can follow; anything else (VeNCrypt, TLS, SASL...) we cannot see through.
SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2
SECURITY_CLIENT_BYTES = {SECURITY_NONE: 0, SECURITY_VNC_AUTH: 16}

VERSION = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
# ClientCutText can announce up to 4 GiB; the filter never buffers what it drops, so this only bounds nonsense.
MAX_CUT_TEXT = 64 * 1024 * 1024

NEED_MORE = -1
# Messages of one size: (length, dropped from a viewer).
FIXED = {
    SET_PIXEL_FORMAT: (20, False),
    FRAMEBUFFER_UPDATE_REQUEST: (10, False),
    KEY_EVENT: (8, True),
    POINTER_EVENT: (6, True),
    ENABLE_CONTINUOUS_UPDATES: (10, False),
    XVP: (4, True),  # power control
}


class ProtocolViolation(Exception):
    """The client sent something the filter cannot follow; the connection must be closed."""


class ViewOnlyFilter:
    """Follows one client's RFB stream; `from_client` returns what may reach the server."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._stage = "version"
        self._minor = 0
        self._security: int | None = None
        self._server = bytearray()
        self._server_done = False
        self._pass_left = 0
        self._drop_left = 0
        self._broken: str | None = None
        self.dropped: dict[int, int] = {}

    @property
    def in_messages(self) -> bool:
        """The handshake is over: the client is sending typed messages."""
        return self._stage == "messages"

    def from_server(self, data: bytes) -> None:
        """What the server sent: RFB 3.3 lets the server choose the security type, which the filter must know."""
        if self._server_done:
            return
        self._server += data
        if len(self._server) < 12:
            return
        if not self._minor:
            return  # the client has not chosen its version yet: keep the bytes until it has
        if self._minor >= 7:
            self._server_done = True  # the client names the security type itself
        elif len(self._server) >= 16:
            (self._security,) = struct.unpack_from(">I", self._server, 12)
            self._server_done = True
        if self._server_done:
            self._server = bytearray()

    def from_client(self, data: bytes) -> bytes:
        if self._broken:
            raise ProtocolViolation(self._broken)
        self._buffer += data
        out = bytearray()
        try:
            while self._buffer:
                if self._drop_left:
                    n = min(self._drop_left, len(self._buffer))
                    del self._buffer[:n]
                    self._drop_left -= n
                elif self._pass_left:
                    n = min(self._pass_left, len(self._buffer))
                    out += self._buffer[:n]
                    del self._buffer[:n]
                    self._pass_left -= n
                elif not self._step(out):
                    break
        except ProtocolViolation as exc:
            self._broken = str(exc)
            raise
        return bytes(out)

    def _step(self, out: bytearray) -> bool:
        """Size the next unit of the stream and set it to pass or drop; False when more bytes are needed."""
        buf = self._buffer
        if self._stage == "version":
            if len(buf) < 12:
                return False
            match = VERSION.fullmatch(bytes(buf[:12]))
            if not match or int(match[1]) != 3 or int(match[2]) not in (3, 4, 5, 7, 8):
                raise ProtocolViolation("unsupported RFB protocol version")
            minor = int(match[2])
            self._minor = 3 if minor in (4, 5) else minor  # servers treat 3.4 and 3.5 as 3.3
            self._pass_left = 12
            self._stage = "security" if self._minor >= 7 else "server-security"
            self.from_server(b"")  # server bytes that waited for the version
            return True
        if self._stage == "server-security":  # RFB 3.3: wait until the server has named the type
            if self._security is None:
                return False
            self._security_chosen(self._security)
            return True
        if self._stage == "security":
            self._pass_left = 1  # the type byte, then the type's own bytes
            self._security_chosen(buf[0])
            return True
        if self._stage == "client-init":
            # ClientInit's shared flag: a viewer must never ask the server to disconnect the others.
            out.append(1)
            del buf[:1]
            self._stage = "messages"
            return True
        return self._message()

    def _security_chosen(self, kind: int) -> None:
        if kind not in SECURITY_CLIENT_BYTES:
            raise ProtocolViolation(f"security type {kind} cannot be filtered")
        self._security = kind
        self._pass_left += SECURITY_CLIENT_BYTES[kind]
        self._stage = "client-init"

    def _message(self) -> bool:
        buf = self._buffer
        kind = buf[0]
        length, drop = self._message_length(kind)
        if length == NEED_MORE:
            return False
        if drop:
            self.dropped[kind] = self.dropped.get(kind, 0) + 1
            self._drop_left = length
        else:
            self._pass_left = length
        return True

    def _message_length(self, kind: int) -> tuple[int, bool]:
        """(total length, drop it) of the message starting the buffer, or NEED_MORE for its header."""
        buf = self._buffer
        if kind in FIXED:
            return FIXED[kind]
        if kind == SET_ENCODINGS:
            if len(buf) < 4:
                return NEED_MORE, False
            return 4 + 4 * struct.unpack_from(">H", buf, 2)[0], False
        if kind == CLIENT_CUT_TEXT:
            if len(buf) < 8:
                return NEED_MORE, False
            (size,) = struct.unpack_from(">i", buf, 4)  # negative: the extended clipboard format
            if abs(size) > MAX_CUT_TEXT:
                raise ProtocolViolation("clipboard message too large")
            return 8 + abs(size), True
        if kind == CLIENT_FENCE:
            if len(buf) < 9:
                return NEED_MORE, False
            return 9 + buf[8], False
        if kind == SET_DESKTOP_SIZE:
            if len(buf) < 7:
                return NEED_MORE, False
            return 8 + 16 * buf[6], True
        if kind == QEMU:
            return self._qemu_length()
        raise ProtocolViolation(f"client message type {kind} cannot be filtered")

    def _qemu_length(self) -> tuple[int, bool]:
        buf = self._buffer
        if len(buf) < 2:
            return NEED_MORE, False
        if buf[1] == QEMU_EXTENDED_KEY_EVENT:
            return 12, True
        if buf[1] == QEMU_AUDIO:
            if len(buf) < 4:
                return NEED_MORE, False
            operation = struct.unpack_from(">H", buf, 2)[0]
            if operation in (0, 1):  # enable, disable
                return 4, False
            if operation == 2:  # set format
                return 10, False
            raise ProtocolViolation(f"QEMU audio operation {operation} cannot be filtered")
        raise ProtocolViolation(f"QEMU client message {buf[1]} cannot be filtered")
