"""Live event-stream scenarios, run in fresh interpreters by test_virt_events.py.

Why a fresh interpreter: libvirt takes one event loop implementation per process, for good, and
the test process may already run libvirt's default loop (test_virt_connection registers it, and
so does any Celery worker code under test). The watcher runs the asyncio one in a process of its
own, so these scenarios do the same.

Scenarios that leave nothing behind share a process (one ``asyncio.run`` each, which also shows a
watcher can restart its loop); those that register the default loop, patch the opener, or leave
libvirt state on purpose get one of their own. Run a group by hand with
``python -m tests.unit.virt.event_scenarios <name>...``: it prints one JSON object mapping each
scenario to its observations (or to ``{"scenario_failed": traceback}``). No Django, and only test:// hosts.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from kvmweb import virt
from kvmweb.virt import connection, events
from kvmweb.virt.xml import DiskSpec, DomainSpec, build_domain_xml

DEFAULT = virt.HostTarget("test:///default")
UNREACHABLE = virt.HostTarget("qemu+unix:///system?socket=/nonexistent")
SLOW = virt.HostTarget("qemu+ssh://slow.invalid/system")
DEADLINE = 5.0  # seconds to wait for a signal that should come at once

Observations = dict[str, Any]
SCENARIOS: dict[str, Callable[[], Observations]] = {}


# Each inner list runs in one process, in order.
GROUPS = [
    [
        "domain_lifecycle",
        "event_from_a_plain_thread",
        "network_and_pool_lifecycle",
        "metadata_change",
        "close_stops_delivery",
        "unreachable_host",
    ],
    ["connection_closed_under_the_stream"],
    ["hung_open_times_out_without_blocking_the_loop"],
    ["new_loop_after_clean_shutdown"],
    ["default_loop_then_asyncio"],
    ["asyncio_then_default_loop"],
]


def scenario(func: Callable[[], Observations]) -> Callable[[], Observations]:
    SCENARIOS[func.__name__] = func
    return func


def uuid_of(spec: DomainSpec) -> str:
    assert spec.uuid is not None
    return spec.uuid


def scratch_spec() -> DomainSpec:
    """A small shut-off guest (conftest's builder, without importing pytest into the child)."""
    return DomainSpec(
        name=f"scratch-{uuid.uuid4().hex[:12]}",
        uuid=str(uuid.uuid4()),
        memory_mib=192,
        vcpus=1,
        domain_type="qemu",
        disks=(DiskSpec(source_file="/var/lib/libvirt/images/scratch.qcow2"),),
    )


def on_watcher_loop(func: Callable[[], Awaitable[Observations]]) -> Callable[[], Observations]:
    """Run ``func`` under asyncio.run with libvirt's asyncio event loop, as the watcher does."""

    def run() -> Observations:
        async def main() -> Observations:
            events.use_asyncio_event_loop(asyncio.get_running_loop())
            return await asyncio.wait_for(func(), 30)

        return asyncio.run(main())

    run.__name__ = func.__name__
    return run


class Recorder:
    """Collects a stream's events and closures, noting whether each came in on the loop's thread."""

    def __init__(self) -> None:
        self.loop_thread = threading.get_ident()
        self.events: list[virt.VirtEvent] = []
        self.off_loop_calls = 0
        self.closed: list[str] = []
        self._changed = asyncio.Event()

    def on_event(self, event: virt.VirtEvent) -> None:
        self._note()
        self.events.append(event)

    def on_closed(self, reason: str) -> None:
        self._note()
        self.closed.append(reason)

    def _note(self) -> None:
        if threading.get_ident() != self.loop_thread:
            self.off_loop_calls += 1
        self._changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float = DEADLINE) -> bool:
        """Wait until ``condition()`` holds (re-checked on each event), or the deadline passes."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return condition()
        return True

    def summary(self, *, kind: str | None = None) -> list[list[str]]:
        return [
            [event.kind, event.name, event.event, event.detail]
            for event in self.events
            if kind is None or event.kind == kind
        ]


@scenario
@on_watcher_loop
async def domain_lifecycle() -> Observations:
    """Define, start, destroy and undefine a domain through the adapter, from worker threads."""
    seen = Recorder()
    before = time.monotonic()
    stream = await virt.open_event_stream(DEFAULT, seen.on_event, seen.on_closed)
    spec = scratch_spec()
    await asyncio.to_thread(virt.define_domain, DEFAULT, build_domain_xml(spec))
    await asyncio.to_thread(virt.start_domain, DEFAULT, uuid_of(spec))
    await asyncio.to_thread(virt.destroy_domain, DEFAULT, uuid_of(spec))
    await asyncio.to_thread(virt.undefine_domain, DEFAULT, uuid_of(spec))
    complete = await seen.wait_for(lambda: len(seen.events) >= 4)
    after = time.monotonic()
    await stream.close()
    return {
        "complete": complete,
        "events": seen.summary(),
        "uuids": sorted({event.uuid for event in seen.events}),
        "expected_uuid": uuid_of(spec),
        "expected_name": spec.name,
        "off_loop_calls": seen.off_loop_calls,
        "times_in_order": all(
            before <= first.at <= second.at <= after
            for first, second in zip(seen.events, seen.events[1:], strict=False)
        ),
        "json_round_trip": all(json.loads(json.dumps(event.to_dict())) == event.to_dict() for event in seen.events),
        "subscriptions": list(stream.subscriptions),
        "closed": stream.closed,
    }


@scenario
@on_watcher_loop
async def event_from_a_plain_thread() -> Observations:
    """An action in a thread the loop knows nothing about must still wake the idle loop."""
    seen = Recorder()
    stream = await virt.open_event_stream(DEFAULT, seen.on_event, seen.on_closed)
    spec = scratch_spec()
    worker = threading.Thread(target=virt.define_domain, args=(DEFAULT, build_domain_xml(spec)))
    started = time.monotonic()
    worker.start()
    arrived = await seen.wait_for(lambda: bool(seen.events))
    waited = time.monotonic() - started
    await asyncio.to_thread(worker.join)
    await asyncio.to_thread(virt.undefine_domain, DEFAULT, uuid_of(spec))
    await stream.close()
    return {"arrived": arrived, "events": seen.summary()[:1], "waited": waited, "off_loop_calls": seen.off_loop_calls}


@scenario
@on_watcher_loop
async def network_and_pool_lifecycle() -> Observations:
    """Networks and pools on the test driver (in memory: no bridge or directory is touched)."""
    seen = Recorder()
    stream = await virt.open_event_stream(DEFAULT, seen.on_event, seen.on_closed)
    conn = connection.get_connection(DEFAULT)

    def churn() -> None:
        net = conn.networkDefineXML("<network><name>kvmweb-ev-net</name><bridge name='kvmwebev0'/></network>")
        net.create()
        net.destroy()
        net.undefine()
        pool = conn.storagePoolDefineXML(
            "<pool type='dir'><name>kvmweb-ev-pool</name><target><path>/kvmweb-ev-pool</path></target></pool>", 0
        )
        pool.create(0)
        pool.refresh(0)
        pool.destroy()
        pool.undefine()

    await asyncio.to_thread(churn)
    complete = await seen.wait_for(lambda: len(seen.events) >= 9)
    await stream.close()
    return {"complete": complete, "events": seen.summary()}


@scenario
@on_watcher_loop
async def metadata_change() -> Observations:
    seen = Recorder()
    stream = await virt.open_event_stream(DEFAULT, seen.on_event, seen.on_closed)
    spec = scratch_spec()
    await asyncio.to_thread(virt.define_domain, DEFAULT, build_domain_xml(spec))
    conn = connection.get_connection(DEFAULT)

    def retitle() -> None:
        # VIR_DOMAIN_METADATA_TITLE = 1; flags 0 change the live and persistent definition.
        conn.lookupByUUIDString(uuid_of(spec)).setMetadata(1, "A new title", None, None, 0)

    await asyncio.to_thread(retitle)
    complete = await seen.wait_for(lambda: len(seen.events) >= 2)
    await asyncio.to_thread(virt.undefine_domain, DEFAULT, uuid_of(spec))
    await stream.close()
    return {"complete": complete, "events": seen.summary()[:2]}


@scenario
@on_watcher_loop
async def connection_closed_under_the_stream() -> Observations:
    """The stream's connection dies; libvirt's close callback must reach on_closed on the loop.

    The test driver never calls close callbacks (only remote connections do, on EOF or missed
    keepalives), so this closes the raw connection and then calls the callback the stream gave
    libvirt, from another thread, as the remote driver would.
    """
    seen = Recorder()
    stream = await virt.open_event_stream(DEFAULT, seen.on_event, seen.on_closed)
    raw = stream._conn
    assert raw is not None

    def die() -> None:
        raw.close()
        stream._libvirt_closed(raw, 1, None)  # VIR_CONNECT_CLOSE_REASON_EOF

    await asyncio.to_thread(die)
    noticed = await seen.wait_for(lambda: bool(seen.closed))
    closed_before = stream.closed
    # A late duplicate report must not call on_closed twice.
    stream._libvirt_closed(raw, 2, None)
    error = None
    try:
        await stream.close()
    except Exception as exc:
        error = repr(exc)
    return {
        "noticed": noticed,
        "reasons": seen.closed,
        "off_loop_calls": seen.off_loop_calls,
        "closed_before_close": closed_before,
        "close_error": error,
    }


@scenario
@on_watcher_loop
async def unreachable_host() -> Observations:
    ticks = 0
    stop = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    error: dict[str, Any] = {}
    try:
        await virt.open_event_stream(UNREACHABLE, print, print, open_timeout=5)
    except virt.VirtError as exc:
        error = {"type": type(exc).__name__, "transient": exc.transient, "message": exc.message}
    elapsed = time.monotonic() - started
    stop.set()
    await ticker
    return {"error": error, "elapsed": elapsed, "ticks": ticks}


@scenario
def hung_open_times_out_without_blocking_the_loop() -> Observations:
    """A host that never answers: the open gives up at the deadline while the loop keeps ticking."""
    release = threading.Event()
    late: list[Any] = []
    real_opener = connection._opener

    def slow_opener(uri: str) -> Any:
        if uri != SLOW.effective_uri():
            return real_opener(uri)
        release.wait(30)
        conn = real_opener("test:///default")
        late.append(conn)
        return conn

    connection._opener = slow_opener

    async def attempt() -> Observations:
        ticks = 0
        stop = asyncio.Event()

        async def tick() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        error: dict[str, Any] = {}
        try:
            await virt.open_event_stream(SLOW, print, print, open_timeout=0.5)
        except virt.VirtError as exc:
            error = {"type": type(exc).__name__, "message": exc.message}
        elapsed = time.monotonic() - started
        stop.set()
        await ticker
        return {"error": error, "elapsed": elapsed, "ticks": ticks}

    async def main() -> Observations:
        events.use_asyncio_event_loop(asyncio.get_running_loop())
        return await attempt()

    observed = asyncio.run(main())
    # asyncio.run has returned although the open is still hung: nothing waited for that thread.
    observed["open_still_hung"] = not late
    release.set()
    for thread in threading.enumerate():
        if thread.name.startswith("libvirt-events-open"):
            thread.join(10)
    observed["late_connection_closed"] = bool(late) and not connection._alive(late[0])
    return observed


@scenario
@on_watcher_loop
async def close_stops_delivery() -> Observations:
    first, second = Recorder(), Recorder()
    stream_a = await virt.open_event_stream(DEFAULT, first.on_event, first.on_closed)
    stream_b = await virt.open_event_stream(DEFAULT, second.on_event, second.on_closed)
    await stream_a.close()
    await stream_a.close()  # closing twice is harmless
    spec = scratch_spec()
    await asyncio.to_thread(virt.define_domain, DEFAULT, build_domain_xml(spec))
    # The second stream hears the event; the first one, subscribed to the same driver, must not.
    heard = await second.wait_for(lambda: bool(second.events))
    await asyncio.to_thread(virt.undefine_domain, DEFAULT, uuid_of(spec))
    await stream_b.close()
    return {"second_heard": heard, "first_events": first.summary(), "first_closed": stream_a.closed}


@scenario
def new_loop_after_clean_shutdown() -> Observations:
    """asyncio.run twice in one process (a restarted watcher), then a third time with a leftover."""

    async def one_round(*, leave_open: bool) -> Observations:
        events.use_asyncio_event_loop(asyncio.get_running_loop())
        seen = Recorder()
        stream = await virt.open_event_stream(DEFAULT, seen.on_event, seen.on_closed)
        spec = scratch_spec()
        await asyncio.to_thread(virt.define_domain, DEFAULT, build_domain_xml(spec))
        heard = await seen.wait_for(lambda: bool(seen.events))
        await asyncio.to_thread(virt.undefine_domain, DEFAULT, uuid_of(spec))
        if not leave_open:
            await stream.close()
            await asyncio.to_thread(virt.close_all)
        return {"heard": heard}

    async def third_round() -> str:
        try:
            events.use_asyncio_event_loop(asyncio.get_running_loop())
        except virt.EventLoopConflict as exc:
            return str(exc)
        return ""

    first = asyncio.run(one_round(leave_open=False))
    second = asyncio.run(one_round(leave_open=True))
    refusal = asyncio.run(third_round())
    return {"first": first, "second": second, "third_refused": refusal}


@scenario
def default_loop_then_asyncio() -> Observations:
    virt.register_event_loop()

    async def main() -> str:
        try:
            events.use_asyncio_event_loop(asyncio.get_running_loop())
        except virt.EventLoopConflict as exc:
            return str(exc)
        return ""

    refusal = asyncio.run(main())
    return {"refusal": refusal, "default_still_running": virt.event_loop_running()}


@scenario
def asyncio_then_default_loop() -> Observations:
    async def main() -> str:
        events.use_asyncio_event_loop(asyncio.get_running_loop())
        try:
            virt.register_event_loop()
        except virt.EventLoopConflict as exc:
            return str(exc)
        return ""

    return {"refusal": asyncio.run(main())}


def main(names: list[str]) -> int:
    results: dict[str, Observations] = {}
    for name in names:
        try:
            results[name] = SCENARIOS[name]()
        except Exception:
            results[name] = {"scenario_failed": traceback.format_exc()}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
