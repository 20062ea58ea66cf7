"""Pushes leave from one sender thread, in the order they were published, without the caller waiting."""

import asyncio
import sys
from pathlib import Path

from channels.layers import get_channel_layer

from kvmweb import settings as kvmweb_settings
from kvmweb.realtime import publish

ROOT = Path(__file__).resolve().parents[2]


async def test_pushes_arrive_in_publish_order_through_redis(settings):  # type: ignore[no-untyped-def]
    settings.CHANNEL_LAYERS = kvmweb_settings.CHANNEL_LAYERS  # the real Redis layer, not the in-memory one
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("publish-order", channel)
    sender = publish._Sender.get()

    for n in range(200):
        sender.enqueue(["publish-order"], {"type": "order", "n": n})

    received = [(await asyncio.wait_for(layer.receive(channel), 5))["message"]["n"] for _ in range(200)]
    assert received == list(range(200))
    await asyncio.to_thread(publish.publish_flush)


async def test_a_process_that_exits_at_once_still_sends_its_pushes(settings):  # type: ignore[no-untyped-def]
    settings.CHANNEL_LAYERS = kvmweb_settings.CHANNEL_LAYERS
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("publish-exit", channel)
    script = (
        "import django; django.setup(); from kvmweb.realtime import publish; "
        "publish._Sender.get().enqueue(['publish-exit'], {'type': 'last-words'})"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=ROOT)
    assert await asyncio.wait_for(process.wait(), 60) == 0

    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message["message"]["type"] == "last-words"
