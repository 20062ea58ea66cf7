"""Pushes leave from one sender thread, in the order they were published, without the caller waiting."""

import asyncio

from channels.layers import get_channel_layer

from kvmweb import settings as kvmweb_settings
from kvmweb.realtime import publish


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
