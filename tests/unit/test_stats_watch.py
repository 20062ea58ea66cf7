"""The watch protocol on /ws/events/: a page names the objects it shows, and receives their live
stats; only objects it may see, and only objects somebody watches, are ever sent."""

import time
import uuid
from datetime import UTC, datetime

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from kvmweb.asgi import application
from kvmweb.realtime.consumers import MAX_WATCHED
from kvmweb.virt.types import DomainStats
from stats import store
from stats.services.sampler import Reading, stats_record
from vms.models import VirtualMachine

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://localhost")]
MINE = "6695eb01-f6a4-8304-79aa-97f2502e193f"
THEIRS = "175ce09d-6f4e-41e4-90e0-9ee9450b63b3"
S = 1_000_000_000


@pytest.fixture(autouse=True)
def stats_redis(settings):  # type: ignore[no-untyped-def]
    settings.KVMWEB_STATS_REDIS_PREFIX = f"kvmweb-test:{uuid.uuid4().hex}:stats:"
    yield
    keys = list(store.client().scan_iter(match=settings.KVMWEB_STATS_REDIS_PREFIX + "*"))
    if keys:
        store.client().delete(*keys)


@pytest.fixture
def vms(host, alice, bob):  # type: ignore[no-untyped-def]
    mine = VirtualMachine.objects.create(uuid=MINE, host=host, name="alice-vm", state="running", owner=alice)
    theirs = VirtualMachine.objects.create(uuid=THEIRS, host=host, name="bob-vm", state="running", owner=bob)
    return mine, theirs


async def socket_for(user) -> WebsocketCommunicator:  # type: ignore[no-untyped-def]
    token = await database_sync_to_async(Token.objects.create)(user=user)
    ws = WebsocketCommunicator(application, f"/ws/events/?token={token.key}", headers=ORIGIN)
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from())["type"] == "hello"
    return ws


def domain(uuid_: str, cpu_s: float) -> DomainStats:
    return DomainStats(uuid=uuid_, cpu_time_ns=int(cpu_s * S), vcpus=1, memory_kib=2048, memory_used_kib=1024,
                       block_rd_bytes=0, block_wr_bytes=0, net_rx_bytes=0, net_tx_bytes=0)  # fmt: skip


def two_rounds(host_id: int) -> int:
    """Two rounds on the host, 10 s apart: VMs MINE and THEIRS each busy 30 % in the second."""
    base = int(time.time()) // 10 * 10 - 20
    first = stats_record(
        host_id=host_id, reading=Reading((domain(MINE, 0), domain(THEIRS, 0)), base * S, None, base * S)
    )
    later = (base + 10) * S
    second = stats_record(host_id=host_id, reading=Reading((domain(MINE, 3), domain(THEIRS, 3)), later, None, later))
    return first.published + second.published


async def test_owner_watching_her_vm_gets_its_live_stats_and_nothing_else(alice, host, vms):  # type: ignore[no-untyped-def]
    ws = await socket_for(alice)
    await ws.send_json_to({"action": "watch", "objects": [f"vm:{MINE}"]})
    assert await ws.receive_json_from(timeout=2) == {"type": "stats.watch", "v": 1, "watching": 1, "refused": []}

    published = await database_sync_to_async(two_rounds)(host.pk)

    # The first round has no rates yet, the second has; nobody watches THEIRS or the host.
    assert published == 2
    first = await ws.receive_json_from(timeout=2)
    second = await ws.receive_json_from(timeout=2)
    assert first["cpu_pct"] is None
    assert second == {
        "type": "stats",
        "v": 1,
        "object": f"vm:{MINE}",
        "ts": second["ts"],
        "cpu_pct": 30.0,
        "mem_used_kib": 1024,
        "mem_total_kib": 2048,
        "disk_rd_bps": 0.0,
        "disk_wr_bps": 0.0,
        "net_rx_bps": 0.0,
        "net_tx_bps": 0.0,
    }
    assert second["ts"] == first["ts"] + 10 and second["ts"] % 10 == 0
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_watch_of_a_vm_you_cannot_see_is_refused_and_sends_nothing(alice, host, vms):  # type: ignore[no-untyped-def]
    ws = await socket_for(alice)
    await ws.send_json_to({"action": "watch", "objects": [f"vm:{THEIRS}", f"host:{host.pk}", "vm:bogus", 7]})
    reply = await ws.receive_json_from(timeout=2)
    assert reply == {"type": "stats.watch", "v": 1, "watching": 1, "refused": [f"vm:{THEIRS}", "vm:bogus"]}

    # The refused VM is not even marked as watched, so the sampler spends nothing on it.
    assert await database_sync_to_async(store.watched)() == {f"host:{host.pk}"}
    published = await database_sync_to_async(two_rounds)(host.pk)
    assert published == 2  # the host's two points, to its watcher
    for _ in range(2):
        assert (await ws.receive_json_from(timeout=2))["object"] == f"host:{host.pk}"
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_nobody_watching_means_nothing_is_published(alice, host, vms):  # type: ignore[no-untyped-def]
    ws = await socket_for(alice)
    assert await database_sync_to_async(two_rounds)(host.pk) == 0
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_unwatch_stops_the_stream(alice, host, vms):  # type: ignore[no-untyped-def]
    ws = await socket_for(alice)
    await ws.send_json_to({"action": "watch", "objects": [f"vm:{MINE}"]})
    await ws.receive_json_from(timeout=2)
    await ws.send_json_to({"action": "unwatch", "objects": [f"vm:{MINE}"]})
    assert await ws.receive_json_from(timeout=2) == {"type": "stats.watch", "v": 1, "watching": 0, "refused": []}
    # Another page may still show it: the shared watch lapses on its own, but this socket is out.
    await database_sync_to_async(two_rounds)(host.pk)
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_renewal_checks_access_again(alice, bob, host, vms):  # type: ignore[no-untyped-def]
    ws = await socket_for(alice)
    await ws.send_json_to({"action": "watch", "objects": [f"vm:{MINE}"]})
    assert (await ws.receive_json_from(timeout=2))["watching"] == 1

    await database_sync_to_async(VirtualMachine.objects.filter(uuid=MINE).update)(owner=bob)
    await ws.send_json_to({"action": "watch", "objects": [f"vm:{MINE}"]})
    assert await ws.receive_json_from(timeout=2) == {
        "type": "stats.watch", "v": 1, "watching": 0, "refused": [f"vm:{MINE}"],
    }  # fmt: skip
    # Her earlier watch lingers in Redis until it lapses, but her socket has left the group.
    await database_sync_to_async(two_rounds)(host.pk)
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_watch_records_an_expiring_entry_in_redis(alice, vms):  # type: ignore[no-untyped-def]
    ws = await socket_for(alice)
    before = time.time()
    await ws.send_json_to({"action": "watch", "objects": [f"vm:{MINE}"]})
    await ws.receive_json_from(timeout=2)
    score = await database_sync_to_async(store.client().zscore)(store.prefix() + "watched", f"vm:{MINE}")
    assert before + store.WATCH_TTL <= score <= time.time() + store.WATCH_TTL
    assert await database_sync_to_async(store.watched)(now=before + store.WATCH_TTL + 1) == set()
    await ws.disconnect()


async def test_a_socket_watches_at_most_200_objects(ada, db):  # type: ignore[no-untyped-def]
    from tests.factories import make_host

    hosts = await database_sync_to_async(lambda: [make_host(f"h{i}").pk for i in range(MAX_WATCHED + 5)])()
    ws = await socket_for(ada)
    labels = [f"host:{pk}" for pk in hosts]
    await ws.send_json_to({"action": "watch", "objects": labels[:150]})
    assert (await ws.receive_json_from(timeout=2))["watching"] == 150
    # Renewing what is watched doesn't count twice; new objects fit up to the limit, the rest are refused.
    await ws.send_json_to({"action": "watch", "objects": labels[100:]})
    reply = await ws.receive_json_from(timeout=5)
    assert reply["watching"] == MAX_WATCHED
    assert len(reply["refused"]) == 5 and not set(reply["refused"]) & set(labels[:150])

    await ws.send_json_to({"action": "watch", "objects": labels})  # more than the limit in one message
    assert (await ws.receive_json_from(timeout=2))["type"] == "error"
    await ws.disconnect()


async def test_malformed_messages_get_an_error_and_keep_the_socket(alice):  # type: ignore[no-untyped-def]
    ws = await socket_for(alice)
    for bad in ["not json", "[1, 2]", '{"action": "dance", "objects": []}', '{"action": "watch", "objects": "vm:1"}']:
        await ws.send_to(text_data=bad)
        assert await ws.receive_json_from(timeout=2) == {
            "type": "error", "v": 1, "message": "Expected {action: watch|unwatch, objects}.",
        }  # fmt: skip
    await ws.disconnect()


def test_sampler_reads_the_watch_set_once_per_round(db, monkeypatch):  # type: ignore[no-untyped-def]
    calls = []
    real = store.watched
    monkeypatch.setattr(store, "watched", lambda **kw: calls.append(1) or real(**kw))
    now = int(datetime.now(UTC).timestamp()) * S
    stats_record(host_id=1, reading=Reading(tuple(domain(str(uuid.uuid4()), 1) for _ in range(50)), now, None, now))
    assert len(calls) == 1
