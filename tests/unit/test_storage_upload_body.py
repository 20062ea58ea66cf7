"""An upload's body under gunicorn's sync worker is read from the client's socket, after gunicorn's
read-ahead, and never past its Content-Length; anywhere else it is read as Django offers it.

The requests here are parsed by gunicorn's own parser and environ builder from a socket pair, as
its sync worker does, so the test sees what the web process sees."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from django.core.handlers.wsgi import WSGIRequest
from django.http.request import RawPostDataException
from django.test import RequestFactory
from gunicorn.config import Config
from gunicorn.http import get_parser, wsgi

from storage.upload_body import Body, SocketBody, StreamBody, request_body

CLIENT, SERVER = ("127.0.0.1", 40000), ("127.0.0.1", 8000)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the web process's end, the client's end)"""
    web, client = socket.socketpair()
    yield web, client
    web.close()
    client.close()


def gunicorn_request(web: socket.socket, client: socket.socket, head: bytes, first: bytes) -> WSGIRequest:
    """The request gunicorn parses once the client sent `head` and `first` (read ahead with the head)."""
    client.sendall(head + first)
    cfg = Config()
    req = next(get_parser(cfg, web, CLIENT))
    _, environ = wsgi.create(req, web, CLIENT, SERVER, cfg)
    return WSGIRequest(environ)


def post(length: int, content_type: str = "application/octet-stream") -> bytes:
    return (
        f"POST /api/v1/pools/1/upload/?name=a.img HTTP/1.1\r\nHost: kvmweb\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def read_all(body: Body) -> bytes:
    buffer, data = memoryview(bytearray(16 * 1024)), bytearray()
    while got := body.readinto(buffer):
        data += buffer[:got]
    return bytes(data)


def test_gunicorn_sync_body_is_read_from_the_socket_and_not_past_its_length(pair) -> None:
    web, client = pair
    data = os.urandom(64 * 1024)
    request = gunicorn_request(web, client, post(len(data)), data[:1000])
    client.sendall(data[1000:] + b"GET /next HTTP/1.1\r\n\r\n")  # the rest, then a pipelined request

    body = request_body(request)

    assert isinstance(body, SocketBody)
    assert read_all(body) == data
    assert body.readinto(memoryview(bytearray(1))) == 0  # at the end, without waiting on the socket
    assert web.recv(100) == b"GET /next HTTP/1.1\r\n\r\n"  # what follows the body was left alone
    with pytest.raises(RawPostDataException):
        request.body  # noqa: B018  (Django counts the body as read: it does not wait on the socket for it)


def test_a_body_whose_client_went_away_ends_short(pair) -> None:
    web, client = pair
    request = gunicorn_request(web, client, post(10_000), b"x" * 3000)
    client.sendall(b"y" * 2000)
    client.close()

    assert read_all(request_body(request)) == b"x" * 3000 + b"y" * 2000


def test_a_form_django_already_parsed_is_not_read_again_from_the_socket(pair) -> None:
    web, client = pair
    form = b"name=a.img&format=raw"
    request = gunicorn_request(web, client, post(len(form), "application/x-www-form-urlencoded"), form)
    assert request.POST["name"] == "a.img"

    body = request_body(request)

    # Django kept the body it read: it hands that out again, and the socket is not waited on.
    assert isinstance(body, StreamBody) and read_all(body) == form


def test_a_body_outside_gunicorn_is_read_from_the_request() -> None:
    request = RequestFactory().post("/api/v1/pools/1/upload/", b"abc" * 1000, content_type="application/octet-stream")

    body = request_body(request)

    assert isinstance(body, StreamBody) and read_all(body) == b"abc" * 1000


def test_a_chunked_body_is_not_read_from_the_socket(pair) -> None:
    web, client = pair
    head = b"POST /api/v1/pools/1/upload/?name=a.img HTTP/1.1\r\nHost: kvmweb\r\nTransfer-Encoding: chunked\r\n\r\n"
    request = gunicorn_request(web, client, head, b"5\r\nhello\r\n0\r\n\r\n")

    body = request_body(request)

    # Through Django, which reads no more than a Content-Length (there is none; the upload is refused).
    assert isinstance(body, StreamBody) and read_all(body) == b""
