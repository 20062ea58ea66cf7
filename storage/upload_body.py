"""The body of an upload request, read into the caller's buffer with as few copies as the server allows.

Under gunicorn's sync worker the bytes come straight from the client's socket (`recv_into`), after
what gunicorn read ahead with the headers. Its own reader (`wsgi.input`) passes every byte through
two BytesIO buffers and a new string per read: for a 1 GiB body that cost the web process ~1.2 CPU s
(memmove, and page faults on freshly mapped memory, measured with perf), against ~0.25 s for
`recv_into` into one buffer. The sync worker is the one that says `wsgi.multithread` is False, and
it closes the connection after each response, so no later request is parsed from this socket. The
read-ahead comes from gunicorn's own reader (`take_buffered()`, which gunicorn 27 offers for its
h2c upgrade); without it, as anywhere else (Django's test client, runserver, another server or
worker class), the body is read from the request as Django offers it.
"""

from __future__ import annotations

import socket
from typing import Protocol

from django.http import HttpRequest


class Body(Protocol):
    def readinto(self, buffer: memoryview, /) -> int:
        """Fill the start of `buffer`; the number of bytes put there, 0 once the body has ended."""
        ...


class SocketBody:
    """`length` bytes: first `held` (gunicorn's read-ahead), then the rest from `sock`. It never
    waits for a byte past `length`, which the client is not going to send."""

    def __init__(self, held: bytes, sock: socket.socket, length: int) -> None:
        self._held = memoryview(held)[:length]  # a pipelined next request is not ours
        self._sock = sock
        self._left = length

    def readinto(self, buffer: memoryview, /) -> int:
        want = min(len(buffer), self._left)
        if not want:
            return 0
        if self._held:
            got = min(want, len(self._held))
            buffer[:got] = self._held[:got]
            self._held = self._held[got:]
        else:
            got = self._sock.recv_into(buffer, want)
        self._left -= got
        return got


class StreamBody:
    """A stream that only offers read(), such as Django's request, as a Body (one copy per read)."""

    def __init__(self, request: HttpRequest) -> None:
        self._read = request.read

    def readinto(self, buffer: memoryview, /) -> int:
        chunk = self._read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def request_body(request: HttpRequest) -> Body:
    """The body of `request`, from the socket when gunicorn's sync worker serves it, the body is sent
    as it is (Content-Length) and nothing has read from it yet (Django parses a form's body itself:
    the socket would have nothing left)."""
    meta = request.META
    sock = meta.get("gunicorn.socket")
    unreader = getattr(getattr(meta.get("wsgi.input"), "reader", None), "unreader", None)
    read_before = getattr(request, "_read_started", True)  # Django's own flag, set by any read
    framed = "HTTP_TRANSFER_ENCODING" in meta  # chunked: the socket carries the framing too
    if sock is None or meta.get("wsgi.multithread") is not False or read_before or framed or unreader is None:
        return StreamBody(request)
    length = int(meta.get("CONTENT_LENGTH") or 0)
    # From here Django counts the body as read: request.body and .POST raise, or stay empty, rather
    # than wait on the socket for bytes this reader took.
    request.read(0)
    return SocketBody(unreader.take_buffered(), sock, length)
