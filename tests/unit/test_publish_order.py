"""Pushes leave from one sender thread, in the order they were published, without the caller waiting."""

import asyncio
import sys
from pathlib import Path

import pytest
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


async def listener(*groups: str):  # type: ignore[no-untyped-def]
    layer = get_channel_layer()
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    return lambda: asyncio.wait_for(layer.receive(channel), 5)


async def test_one_push_reaches_every_group_it_names(settings):  # type: ignore[no-untyped-def]
    settings.CHANNEL_LAYERS = kvmweb_settings.CHANNEL_LAYERS
    first, second = await listener("publish-a"), await listener("publish-b")
    publish._Sender.get().enqueue(["publish-a", "publish-b"], {"type": "both"})
    assert [(await first())["message"]["type"], (await second())["message"]["type"]] == ["both", "both"]
    await asyncio.to_thread(publish.publish_flush)


async def test_a_held_push_is_replaced_by_a_newer_one_with_its_key(settings):  # type: ignore[no-untyped-def]
    settings.CHANNEL_LAYERS = kvmweb_settings.CHANNEL_LAYERS
    receive = await listener("publish-held")
    sender = publish._Sender.get()
    sender.enqueue(["publish-held"], {"type": "running"}, key="op:1", hold=0.5)
    sender.enqueue(["publish-held"], {"type": "other"}, key="op:2")
    sender.enqueue(["publish-held"], {"type": "succeeded"}, key="op:1")
    sender.enqueue(["publish-held"], {"type": "alone"}, key="op:3", hold=0.05)
    received = [(await receive())["message"]["type"] for _ in range(3)]
    assert received == ["other", "succeeded", "alone"]
    await asyncio.to_thread(publish.publish_flush)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(receive(), 0.7)  # the replaced "running" never comes


async def test_flush_sends_what_is_held_at_once(settings):  # type: ignore[no-untyped-def]
    settings.CHANNEL_LAYERS = kvmweb_settings.CHANNEL_LAYERS
    receive = await listener("publish-flush")
    publish._Sender.get().enqueue(["publish-flush"], {"type": "held"}, key="op:9", hold=60)
    await asyncio.to_thread(publish.publish_flush)
    assert (await receive())["message"]["type"] == "held"
