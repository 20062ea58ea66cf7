"""An open VM page follows its host going unreachable and coming back: the host.state message reaches
everyone who sees the VM, and the page's action bar, fetched again, offers what the host can take.

alice is a member of the host and owns a VM there; bob owns a VM there without being a member (an
administrator gave it to him); charlie owns nothing.
"""

from typing import Any

import lxml.html
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.services import host_apply_info, host_mark_unreachable
from kvmweb import virt
from kvmweb.asgi import application
from tests.factories import make_user, make_vm

ORIGIN = [(b"origin", b"http://localhost")]


async def events_socket(user: Any) -> WebsocketCommunicator:
    token = await database_sync_to_async(Token.objects.create)(user=user)
    ws = WebsocketCommunicator(application, f"/ws/events/?token={token.key}", headers=ORIGIN)
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from())["type"] == "hello"
    return ws


@pytest.mark.django_db(transaction=True)
async def test_owners_outside_the_host_hear_its_state_without_the_error(alice, bob, host):  # type: ignore[no-untyped-def]
    charlie = await database_sync_to_async(make_user)("charlie")
    await database_sync_to_async(make_vm)(host, "alices", owner=alice)
    await database_sync_to_async(make_vm)(host, "bobs", owner=bob)
    sockets = {user.username: await events_socket(user) for user in (alice, bob, charlie)}

    await database_sync_to_async(host_mark_unreachable)(host=host, reason="Connection refused")

    to_bob = await sockets["bob"].receive_json_from(timeout=2)
    assert to_bob == {
        "type": "host.state",
        "v": 1,
        "host": {
            "id": host.pk,
            "name": "lab",
            "state": "unreachable",
            "state_label": "Unreachable",
            "last_seen": host.last_seen.isoformat(),
        },
    }
    to_alice = await sockets["alice"].receive_json_from(timeout=2)
    assert to_alice["host"]["last_error"] == "Connection refused"  # a member: the whole message, once
    assert await sockets["alice"].receive_nothing(timeout=0.3)
    assert await sockets["bob"].receive_nothing(timeout=0.3)
    assert await sockets["charlie"].receive_nothing(timeout=0.3)
    for ws in sockets.values():
        await ws.disconnect()


def action_bar(client: Client, vm: Any) -> Any:
    """The VM page's action region, fetched as live.js fetches it when a watched message arrives."""
    page = client.get(f"/vms/{vm.uuid}/", HTTP_X_REQUESTED_WITH="fetch")
    assert page.status_code == 200
    [region] = lxml.html.fromstring(page.content).xpath('//*[@data-live-region="vm-actions"]')
    return region


def test_the_action_bar_follows_the_host_away_and_back(bob, host):  # type: ignore[no-untyped-def]
    vm = make_vm(host, "bobs", owner=bob, state="shutoff")
    client = Client()
    client.force_login(bob)
    bar = action_bar(client, vm)
    assert f"host:{host.pk}" in bar.get("data-live-watch").split()
    assert bar.get("hidden") is None and bar.xpath('.//form[@data-vm-action="start"]')

    host_mark_unreachable(host=host, reason="Connection refused")
    bar = action_bar(client, vm)
    assert bar.get("hidden") is not None and bar.xpath(".//form[@data-vm-action]") == []

    host_apply_info(host=host, info=virt.get_host_info(virt.HostTarget(host.uri)))
    bar = action_bar(client, vm)
    assert bar.get("hidden") is None and bar.xpath('.//form[@data-vm-action="start"]')
