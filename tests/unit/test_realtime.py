"""/ws/events/: who may connect, what they are subscribed to, and the exact messages they receive."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from hosts.services import host_mark_unreachable
from kvmweb.asgi import application
from kvmweb.realtime import groups
from kvmweb.realtime.publish import publish

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://localhost")]


async def connect(path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=ORIGIN)
    return communicator


async def token_for(user) -> str:  # type: ignore[no-untyped-def]
    token = await database_sync_to_async(Token.objects.create)(user=user)
    return token.key


async def assert_closed_unauthenticated(ws: WebsocketCommunicator) -> None:
    await ws.connect()
    assert await ws.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


async def test_anonymous_socket_is_closed_with_4401():  # type: ignore[no-untyped-def]
    await assert_closed_unauthenticated(await connect("/ws/events/"))


async def test_bad_token_is_refused(alice):  # type: ignore[no-untyped-def]
    await assert_closed_unauthenticated(await connect("/ws/events/?token=not-a-token"))


async def test_foreign_origin_is_refused(ada):  # type: ignore[no-untyped-def]
    ws = WebsocketCommunicator(
        application, f"/ws/events/?token={await token_for(ada)}", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await ws.connect()
    assert not connected


async def test_member_gets_her_hosts_state_changes_and_not_others(alice, bob, host):  # type: ignore[no-untyped-def]
    alice_ws = await connect(f"/ws/events/?token={await token_for(alice)}")
    bob_ws = await connect(f"/ws/events/?token={await token_for(bob)}")
    assert (await alice_ws.connect())[0] and (await bob_ws.connect())[0]
    assert (await alice_ws.receive_json_from())["type"] == "hello"
    assert (await bob_ws.receive_json_from())["type"] == "hello"

    await database_sync_to_async(host_mark_unreachable)(host=host, reason="Connection refused")

    message = await alice_ws.receive_json_from(timeout=2)
    assert message == {
        "type": "host.state",
        "v": 1,
        "host": {
            "id": host.pk,
            "name": "lab",
            "state": "unreachable",
            "state_label": "Unreachable",
            "last_seen": host.last_seen.isoformat(),
            "last_error": "Connection refused",
            "libvirt_version": "",
            "hypervisor": "",
            "hypervisor_version": "",
            "virt_types": [],
            "cpus": None,
            "memory_kib": None,
        },
    }
    assert await bob_ws.receive_nothing(timeout=0.3)
    await alice_ws.disconnect()
    await bob_ws.disconnect()


async def test_same_message_through_two_groups_arrives_once(ada):  # type: ignore[no-untyped-def]
    ws = await connect(f"/ws/events/?token={await token_for(ada)}")
    assert (await ws.connect())[0]
    await ws.receive_json_from()
    message = {"type": "operation", "operation": {"id": 5, "status": "running"}}
    await database_sync_to_async(publish)([groups.ADMINS], message)
    await database_sync_to_async(publish)([groups.ADMINS], message)
    assert (await ws.receive_json_from(timeout=2))["operation"]["id"] == 5
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


def test_publish_refuses_payloads_that_are_not_json():  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError):
        publish(groups.ADMINS, {"type": "x", "bad": object()})
