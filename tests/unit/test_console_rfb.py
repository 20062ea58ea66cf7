"""The view-only filter: a viewer's keyboard, mouse and clipboard never reach the guest; the rest does."""

from __future__ import annotations

import random
import struct

import pytest

from consoles.proxy.rfb import ProtocolViolation, ViewOnlyFilter
from tests.vnc import client_cut_text, key_event, pointer_event, set_encodings, update_request

VERSION_38 = b"RFB 003.008\n"
# What noVNC sends first: version, security None, ClientInit (shared).
HANDSHAKE = VERSION_38 + b"\x01" + b"\x01"
SET_PIXEL_FORMAT = b"\x00\x00\x00\x00" + struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
CONTINUOUS = struct.pack(">BBHHHH", 150, 1, 0, 0, 720, 400)
FENCE = struct.pack(">BxxxIB", 248, 0x80000001, 4) + b"abcd"
QEMU_AUDIO_ENABLE = struct.pack(">BBH", 255, 1, 0)
QEMU_AUDIO_FORMAT = struct.pack(">BBHBBI", 255, 1, 2, 3, 2, 44100)
QEMU_KEY = struct.pack(">BBHII", 255, 0, 1, 0x61, 0x1E)
XVP_REBOOT = struct.pack(">BxBB", 250, 1, 3)
DESKTOP_SIZE = struct.pack(">BxHHBx", 251, 1024, 768, 1) + bytes(16)

PASSED = [
    SET_PIXEL_FORMAT,
    set_encodings(0, 7, -223, -258),
    update_request(False, 720, 400),
    CONTINUOUS,
    FENCE,
    QEMU_AUDIO_ENABLE,
    QEMU_AUDIO_FORMAT,
]
DROPPED = [
    key_event(0x61, True),
    pointer_event(1, 10, 20),
    client_cut_text(b"rm -rf /"),
    QEMU_KEY,
    XVP_REBOOT,
    DESKTOP_SIZE,
]


def after_handshake() -> ViewOnlyFilter:
    viewer = ViewOnlyFilter()
    assert viewer.from_client(HANDSHAKE) == HANDSHAKE
    assert viewer.in_messages
    return viewer


def test_the_handshake_passes_unchanged():
    viewer = ViewOnlyFilter()
    assert viewer.from_client(VERSION_38) == VERSION_38
    assert viewer.from_client(b"\x01") == b"\x01"
    assert not viewer.in_messages
    assert viewer.from_client(b"\x01") == b"\x01"
    assert viewer.in_messages


def test_a_viewer_cannot_ask_for_exclusive_access():
    # ClientInit shared=0 would let libvirt's default share policy disconnect everyone else.
    viewer = ViewOnlyFilter()
    assert viewer.from_client(VERSION_38 + b"\x01" + b"\x00") == VERSION_38 + b"\x01" + b"\x01"


@pytest.mark.parametrize("message", DROPPED, ids=["key", "pointer", "cut-text", "qemu-key", "xvp", "desktop-size"])
def test_input_is_dropped(message):  # type: ignore[no-untyped-def]
    viewer = after_handshake()
    assert viewer.from_client(message) == b""
    assert sum(viewer.dropped.values()) == 1


@pytest.mark.parametrize(
    "message", PASSED, ids=["pixel-format", "encodings", "update", "continuous", "fence", "audio", "audio-format"]
)
def test_everything_else_passes(message):  # type: ignore[no-untyped-def]
    viewer = after_handshake()
    assert viewer.from_client(message) == message
    assert viewer.dropped == {}


def test_a_mixed_stream_keeps_only_what_a_viewer_may_send():
    viewer = after_handshake()
    stream = b"".join(m for pair in zip(PASSED, DROPPED, strict=False) for m in pair) + PASSED[-1]
    assert viewer.from_client(stream) == b"".join(PASSED[: len(DROPPED)]) + PASSED[-1]
    assert viewer.dropped == {4: 1, 5: 1, 6: 1, 255: 1, 250: 1, 251: 1}


@pytest.mark.parametrize("seed", range(40))
def test_any_split_of_the_stream_gives_the_same_result(seed):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    messages = [rng.choice(PASSED + DROPPED) for _ in range(60)]
    stream = HANDSHAKE + b"".join(messages)
    expected = HANDSHAKE + b"".join(m for m in messages if m in PASSED)
    viewer, out, at = ViewOnlyFilter(), bytearray(), 0
    while at < len(stream):
        size = rng.choice([1, 1, 2, 3, 5, 7, 13, 64])
        out += viewer.from_client(stream[at : at + size])
        at += size
    assert bytes(out) == expected


def test_a_large_clipboard_is_dropped_without_being_held():
    viewer = after_handshake()
    text = b"x" * 100_000
    message = client_cut_text(text)
    outputs = [viewer.from_client(message[i : i + 4096]) for i in range(0, len(message), 4096)]
    assert b"".join(outputs) == b""
    assert len(viewer._buffer) == 0
    tail = update_request(True, 8, 8)
    assert viewer.from_client(tail) == tail


def test_the_extended_clipboard_negative_length_is_dropped_whole():
    viewer = after_handshake()
    payload = b"\x00\x00\x00\x01" + b"hello"
    message = struct.pack(">Bxxxi", 6, -len(payload)) + payload
    tail = update_request(True, 1, 1)
    assert viewer.from_client(message + tail) == tail


def test_an_unknown_message_type_closes_the_connection():
    viewer = after_handshake()
    with pytest.raises(ProtocolViolation, match="type 99"):
        viewer.from_client(b"\x63" + bytes(20))
    # Broken for good: nothing more passes, whatever comes next.
    with pytest.raises(ProtocolViolation):
        viewer.from_client(update_request(True, 1, 1))


def test_an_unknown_qemu_message_closes_the_connection():
    viewer = after_handshake()
    with pytest.raises(ProtocolViolation, match="QEMU client message 7"):
        viewer.from_client(b"\xff\x07\x00\x00")


def test_messages_before_an_unknown_one_have_already_passed():
    viewer = after_handshake()
    good = update_request(True, 1, 1)
    assert viewer.from_client(good) == good
    with pytest.raises(ProtocolViolation):
        viewer.from_client(b"\x09")


@pytest.mark.parametrize("version", [b"RFB 004.000\n", b"RFB 003.006\n", b"HTTP/1.1 200\n"])
def test_an_unsupported_version_closes_the_connection(version):  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolViolation, match="version"):
        ViewOnlyFilter().from_client(version)


def test_a_security_type_it_cannot_follow_closes_the_connection():
    viewer = ViewOnlyFilter()
    viewer.from_client(VERSION_38)
    with pytest.raises(ProtocolViolation, match="security type 19"):
        viewer.from_client(b"\x13")  # VeNCrypt: the rest would be encrypted


def test_vnc_authentication_passes_its_response_then_filters():
    viewer = ViewOnlyFilter()
    response = bytes(range(16))
    stream = VERSION_38 + b"\x02" + response + b"\x01" + key_event(0x61, True) + update_request(True, 1, 1)
    assert viewer.from_client(stream) == VERSION_38 + b"\x02" + response + b"\x01" + update_request(True, 1, 1)


def test_rfb_33_waits_for_the_server_to_name_the_security_type():
    viewer = ViewOnlyFilter()
    version = b"RFB 003.003\n"
    viewer.from_server(version)
    assert viewer.from_client(version) == version
    # The client's next bytes mean nothing until the server's choice is known: held, not forwarded.
    stream = bytes(range(16)) + b"\x01" + key_event(0x61, True) + update_request(True, 1, 1)
    assert viewer.from_client(stream) == b""
    viewer.from_server(struct.pack(">I", 2))  # VNC authentication: 16 bytes of response
    assert viewer.from_client(b"") == bytes(range(16)) + b"\x01" + update_request(True, 1, 1)


def test_rfb_33_with_no_security():
    viewer = ViewOnlyFilter()
    viewer.from_server(b"RFB 003.008\n")
    assert viewer.from_client(b"RFB 003.003\n") == b"RFB 003.003\n"
    viewer.from_server(struct.pack(">I", 1))
    assert viewer.from_client(b"\x00" + pointer_event(0, 1, 1)) == b"\x01"
    assert viewer.in_messages
