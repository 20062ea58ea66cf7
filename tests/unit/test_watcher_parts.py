"""The watcher's building blocks: reconnect backoff, per-object coalescing, and which hosts to watch."""

import asyncio
import random
import threading

import pytest

from hosts.watcher.backoff import Backoff
from hosts.watcher.coalesce import Coalescer
from hosts.watcher.executors import DaemonExecutor, run_in
from hosts.watcher.plan import HostSpec, Plan, enabled_hosts, plan_changes
from kvmweb import virt
from tests.factories import make_host

# -- backoff ----------------------------------------------------------------------------------


def test_backoff_doubles_from_one_second_to_a_sixty_second_cap():
    backoff = Backoff(jitter=0)
    assert [backoff.next() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_backoff_jitter_stays_within_twenty_percent_and_under_the_cap():
    backoff = Backoff(rng=random.Random(4))
    for _ in range(200):
        base = backoff.base()
        delay = backoff.next()
        assert base * 0.8 <= delay <= min(60, base * 1.2)


def test_backoff_spreads_hosts_that_failed_together():
    delays = {Backoff(rng=random.Random(seed)).next() for seed in range(20)}
    assert len(delays) == 20


def test_backoff_starts_again_after_a_connection_that_worked():
    backoff = Backoff(jitter=0)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() == 1


def test_backoff_of_a_host_down_for_days_stays_at_the_cap():
    backoff = Backoff(jitter=0, attempts=100_000)
    assert backoff.next() == 60


# -- coalescing -------------------------------------------------------------------------------


class Recorder:
    """A fetch that the test releases by hand, and a deliver that records what it got."""

    def __init__(self) -> None:
        self.version = 0
        self.fetched: list[str] = []
        self.delivered: list[tuple[str, int]] = []
        self.gate: asyncio.Event | None = None

    async def fetch(self, key: str) -> int:
        self.fetched.append(key)
        seen = self.version
        if self.gate is not None:
            await self.gate.wait()
        return seen

    async def deliver(self, key: str, value: int) -> None:
        self.delivered.append((key, value))


async def test_a_lone_event_is_fetched_at_once_and_delivered_once():
    rec = Recorder()
    coalescer = Coalescer(rec.fetch, rec.deliver)
    coalescer.touch("vm-a")
    await asyncio.sleep(0)  # one loop turn: the fetch has started, nothing waited for more events
    assert rec.fetched == ["vm-a"]
    await coalescer.idle()
    assert rec.delivered == [("vm-a", 0)]


async def test_a_burst_for_one_vm_in_the_same_instant_costs_one_fetch_and_one_message():
    rec = Recorder()
    coalescer = Coalescer(rec.fetch, rec.deliver)
    for _ in range(5):  # e.g. "resumed" + "started" dispatched together
        coalescer.touch("vm-a")
    await coalescer.idle()
    assert rec.fetched == ["vm-a"] and rec.delivered == [("vm-a", 0)]


async def test_events_during_a_fetch_cause_exactly_one_more_fetch_and_one_message():
    rec = Recorder()
    rec.gate = asyncio.Event()
    coalescer = Coalescer(rec.fetch, rec.deliver)
    coalescer.touch("vm-a")
    await asyncio.sleep(0)
    for version in range(1, 6):  # five more events while the first fetch is in flight
        rec.version = version
        coalescer.touch("vm-a")
    rec.gate.set()
    await coalescer.idle()
    # The first answer was already out of date: it is dropped, not pushed to browsers.
    assert rec.fetched == ["vm-a", "vm-a"]
    assert rec.delivered == [("vm-a", 5)]


async def test_a_vm_that_never_stops_changing_is_still_delivered():
    rec = Recorder()
    coalescer = Coalescer(rec.fetch, rec.deliver, max_skips=2)

    async def fetch_and_touch_again(key: str) -> int:
        value = await rec.fetch(key)
        if len(rec.fetched) < 10:
            coalescer.touch(key)  # another event arrives during every fetch
        return value

    coalescer._fetch = fetch_and_touch_again
    coalescer.touch("vm-a")
    await coalescer.idle()
    assert len(rec.fetched) == 10
    assert len(rec.delivered) >= 3  # at least every third fetch is delivered


async def test_different_vms_do_not_wait_for_each_other():
    rec = Recorder()
    slow = asyncio.Event()

    async def fetch(key: str) -> int:
        if key == "slow":
            await slow.wait()
        return await rec.fetch(key)

    coalescer = Coalescer(fetch, rec.deliver)
    coalescer.touch("slow")
    coalescer.touch("fast")
    for _ in range(3):
        await asyncio.sleep(0)
    assert rec.delivered == [("fast", 0)]
    slow.set()
    await coalescer.idle()
    assert sorted(rec.delivered) == [("fast", 0), ("slow", 0)]


async def test_paused_coalescer_collects_keys_and_fetches_them_on_resume():
    rec = Recorder()
    coalescer = Coalescer(rec.fetch, rec.deliver, paused=True)
    for key in ("a", "b", "a"):
        coalescer.touch(key)
    await asyncio.sleep(0)
    assert rec.fetched == [] and coalescer.pending == {"a", "b"}
    coalescer.resume()
    await coalescer.idle()
    assert sorted(rec.delivered) == [("a", 0), ("b", 0)]


async def test_an_answer_fetched_while_the_connection_was_replaced_is_fetched_again():
    rec = Recorder()
    rec.gate = asyncio.Event()
    coalescer = Coalescer(rec.fetch, rec.deliver)
    coalescer.touch("a")
    await asyncio.sleep(0)
    coalescer.pause()  # the connection dropped while the fetch was in flight
    rec.gate.set()
    await coalescer.idle()
    assert rec.delivered == [] and coalescer.pending == {"a"}
    rec.version = 1
    coalescer.resume()
    await coalescer.idle()
    assert rec.delivered == [("a", 1)]


async def test_a_failed_fetch_is_dropped_and_later_events_still_work():
    rec = Recorder()
    fail = True

    async def fetch(key: str) -> int:
        if fail:
            raise virt.HostUnreachable("gone")
        return await rec.fetch(key)

    coalescer = Coalescer(fetch, rec.deliver)
    coalescer.touch("a")
    await coalescer.idle()
    assert rec.delivered == []
    fail = False
    coalescer.touch("a")
    await coalescer.idle()
    assert rec.delivered == [("a", 0)]


async def test_a_failing_delivery_does_not_stop_the_next_one():
    delivered = []

    async def fetch(key: str) -> str:
        return key

    async def deliver(key: str, value: str) -> None:
        if key == "bad":
            raise RuntimeError("database down")
        delivered.append(key)

    coalescer = Coalescer(fetch, deliver)
    coalescer.touch("bad")
    coalescer.touch("good")
    await coalescer.idle()
    assert delivered == ["good"]


# -- threads --------------------------------------------------------------------------------


async def test_a_hung_call_on_one_executor_does_not_delay_another():
    stuck, quick = DaemonExecutor("stuck"), DaemonExecutor("quick")
    release = threading.Event()
    hung = asyncio.ensure_future(run_in(stuck, release.wait, 30))
    assert await asyncio.wait_for(run_in(quick, lambda: "answered"), 2) == "answered"
    assert stuck._threads[0].daemon  # a call hung on a dead host never blocks the process's exit
    release.set()
    assert await hung is True
    stuck.shutdown()
    quick.shutdown()


@pytest.mark.django_db(transaction=True)
async def test_a_database_connection_that_died_is_replaced_and_the_write_still_done():
    from django.db import connection, connections

    from hosts.models import Host
    from hosts.watcher.executors import run_db

    executor = DaemonExecutor("db", on_exit=connections.close_all)
    attempts = []

    def count_hosts() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            connection.ensure_connection()
            connection.connection.close()  # the database restarted since this connection's last use
        return Host.objects.count()

    try:
        assert await run_db(executor, count_hosts) == 0
        assert len(attempts) == 2
    finally:
        executor.shutdown()


async def test_executor_refuses_work_after_shutdown():
    executor = DaemonExecutor("done")
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(print)


# -- which hosts ------------------------------------------------------------------------------


def spec(host_id: int, name: str = "h", uri: str = "test:///default", keyfile: str | None = None) -> HostSpec:
    return HostSpec(id=host_id, name=name, target=virt.HostTarget(uri=uri, keyfile=keyfile))


def test_new_host_is_started_and_removed_host_stopped():
    assert plan_changes({1: spec(1), 2: spec(2)}, {2: spec(2), 3: spec(3)}) == Plan(start=[spec(3)], stop=[1])


def test_changed_uri_or_credentials_restart_the_connection():
    ssh = spec(1, uri="qemu+ssh://root@kvm1/system", keyfile="/keys/a")
    rekeyed = spec(1, uri="qemu+ssh://root@kvm1/system", keyfile="/keys/b")
    assert plan_changes({1: ssh}, {1: rekeyed}) == Plan(restart=[rekeyed])
    assert plan_changes({1: spec(1)}, {1: spec(1, uri="test:///other.xml")}).restart == [
        spec(1, uri="test:///other.xml")
    ]


def test_rename_keeps_the_connection():
    plan = plan_changes({1: spec(1, "old")}, {1: spec(1, "new")})
    assert plan == Plan(rename=[spec(1, "new")]) and not plan.start and not plan.restart


def test_nothing_changed_means_nothing_to_do():
    assert not plan_changes({1: spec(1)}, {1: spec(1)})


def test_only_enabled_hosts_are_watched(db):  # type: ignore[no-untyped-def]
    on = make_host("on", uri="qemu+ssh://root@kvm1/system", ssh_key_path="/etc/kvmweb/id")
    make_host("off", enabled=False, state="disabled")
    assert enabled_hosts() == {
        on.pk: HostSpec(
            id=on.pk, name="on", target=virt.HostTarget(uri="qemu+ssh://root@kvm1/system", keyfile="/etc/kvmweb/id")
        )
    }


def test_a_host_row_with_a_bad_uri_is_skipped_not_fatal(db):  # type: ignore[no-untyped-def]
    make_host("bad", uri="http://nope")
    good = make_host("good")
    assert list(enabled_hosts()) == [good.pk]
