"""Event streams for the asyncio watcher: names, loop guard, and live scenarios on test:///default.

The live scenarios (event_scenarios.py) each run in a fresh interpreter, all started at once when
the first of them is needed: a process gets one libvirt event loop implementation for good, and
this one may already run the default loop.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kvmweb import virt
from kvmweb.virt import event_names
from kvmweb.virt.events import _LoopBridge
from tests.unit.virt.event_scenarios import GROUPS, SCENARIOS

REPO = Path(__file__).resolve().parents[3]


class Scenarios:
    """Starts every scenario group at once, and hands out each scenario's observations."""

    def __init__(self) -> None:
        self._running: list[tuple[list[str], subprocess.Popen[str]]] = []
        self._results: dict[str, dict[str, Any]] = {}

    def result(self, name: str) -> dict[str, Any]:
        if not self._running:
            self._start_all()
        if name not in self._results:
            self._collect(name)
        observed = self._results[name]
        assert "scenario_failed" not in observed, f"scenario {name} failed:\n{observed['scenario_failed']}"
        return observed

    def _start_all(self) -> None:
        for group in GROUPS:
            command = [sys.executable, "-m", "tests.unit.virt.event_scenarios", *group]
            process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._running.append((group, process))

    def _collect(self, name: str) -> None:
        [(group, process)] = [(group, process) for group, process in self._running if name in group]
        stdout, stderr = process.communicate(timeout=90)
        assert process.returncode == 0, f"scenarios {group} crashed:\n{stderr}"
        self._results.update(json.loads(stdout.strip().splitlines()[-1]))

    def stop(self) -> None:
        for _group, process in self._running:
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture(scope="module")
def scenarios() -> Iterator[Scenarios]:
    runner = Scenarios()
    yield runner
    runner.stop()


def test_domain_lifecycle_arrives_in_order_on_the_loop_thread(scenarios: Scenarios) -> None:
    observed = scenarios.result("domain_lifecycle")

    name = observed["expected_name"]
    assert observed["complete"] is True
    assert observed["events"] == [
        ["domain", name, "defined", "added"],
        ["domain", name, "started", "booted"],
        ["domain", name, "stopped", "destroyed"],
        ["domain", name, "undefined", "removed"],
    ]
    assert observed["uuids"] == [observed["expected_uuid"]]
    assert observed["off_loop_calls"] == 0
    assert observed["times_in_order"] is True
    assert observed["json_round_trip"] is True
    assert observed["subscriptions"] == [
        "domain-lifecycle",
        "domain-reboot",
        "domain-device-added",
        "domain-device-removed",
        "domain-metadata-change",
        "network-lifecycle",
        "pool-lifecycle",
        "pool-refresh",
    ]
    assert observed["closed"] is True


def test_event_queued_by_an_unrelated_thread_wakes_the_idle_loop(scenarios: Scenarios) -> None:
    # Stock libvirtaio leaves such an event waiting until the loop wakes for another reason.
    observed = scenarios.result("event_from_a_plain_thread")

    assert observed["arrived"] is True
    assert observed["events"][0][2:] == ["defined", "added"]
    assert observed["off_loop_calls"] == 0


def test_network_and_pool_lifecycle_and_refresh(scenarios: Scenarios) -> None:
    observed = scenarios.result("network_and_pool_lifecycle")

    assert observed["complete"] is True
    assert observed["events"] == [
        ["network", "kvmweb-ev-net", "defined", ""],
        ["network", "kvmweb-ev-net", "started", ""],
        ["network", "kvmweb-ev-net", "stopped", ""],
        ["network", "kvmweb-ev-net", "undefined", ""],
        ["pool", "kvmweb-ev-pool", "defined", ""],
        ["pool", "kvmweb-ev-pool", "started", ""],
        ["pool", "kvmweb-ev-pool", "refresh", ""],
        ["pool", "kvmweb-ev-pool", "stopped", ""],
        ["pool", "kvmweb-ev-pool", "undefined", ""],
    ]


def test_metadata_change_names_what_changed(scenarios: Scenarios) -> None:
    observed = scenarios.result("metadata_change")

    assert observed["complete"] is True
    assert [event[2:] for event in observed["events"]] == [["defined", "added"], ["metadata-changed", "title"]]


def test_connection_lost_under_the_stream_calls_on_closed_once_on_the_loop(scenarios: Scenarios) -> None:
    observed = scenarios.result("connection_closed_under_the_stream")

    assert observed == {
        "noticed": True,
        "reasons": ["eof"],
        "off_loop_calls": 0,
        "closed_before_close": True,
        "close_error": None,
    }


def test_unreachable_host_fails_promptly_as_host_unreachable(scenarios: Scenarios) -> None:
    observed = scenarios.result("unreachable_host")

    assert observed["error"] == {
        "type": "HostUnreachable",
        "transient": True,
        "message": "The host could not be reached. (Failed to connect socket to '/nonexistent': "
        "No such file or directory)",
    }
    assert observed["elapsed"] < 5  # the open timeout was 5 s: the refusal came first


def test_hung_open_gives_up_at_the_deadline_while_the_loop_runs(scenarios: Scenarios) -> None:
    observed = scenarios.result("hung_open_times_out_without_blocking_the_loop")

    assert observed["error"] == {
        "type": "HostUnreachable",
        "message": "The host did not answer within 0.5 s (qemu+ssh://slow.invalid/system).",
    }
    assert 0.5 <= observed["elapsed"] < 5
    # A ticker sleeping 10 ms at a time kept running while the open hung.
    assert observed["ticks"] >= 10
    assert observed["open_still_hung"] is True, "asyncio.run must not wait for the hung open"
    assert observed["late_connection_closed"] is True


def test_closed_stream_hears_nothing_more(scenarios: Scenarios) -> None:
    observed = scenarios.result("close_stops_delivery")

    assert observed == {"second_heard": True, "first_events": [], "first_closed": True}


def test_watcher_can_restart_its_loop_only_after_a_clean_shutdown(scenarios: Scenarios) -> None:
    observed = scenarios.result("new_loop_after_clean_shutdown")

    assert observed["first"] == {"heard": True}
    assert observed["second"] == {"heard": True}
    assert observed["third_refused"].startswith("libvirt's asyncio event loop still serves another asyncio loop")


def test_default_loop_process_refuses_the_asyncio_loop(scenarios: Scenarios) -> None:
    observed = scenarios.result("default_loop_then_asyncio")

    assert observed["refusal"].startswith("This process already registered libvirt's default event loop")
    assert observed["default_still_running"] is True


def test_asyncio_loop_process_refuses_the_default_loop(scenarios: Scenarios) -> None:
    observed = scenarios.result("asyncio_then_default_loop")

    assert observed["refusal"].startswith("This process already registered libvirt's asyncio event loop")


# In this process: no libvirt event loop is registered by these tests.


@pytest.mark.asyncio
async def test_stream_needs_the_asyncio_event_loop_first() -> None:
    with pytest.raises(virt.EventLoopConflict):
        await virt.open_event_stream(virt.HostTarget("test:///default"), print, print)


@pytest.mark.asyncio
async def test_bridge_runs_other_threads_calls_on_the_loop_in_order() -> None:
    loop = asyncio.get_running_loop()
    bridge = _LoopBridge(loop)
    ran: list[tuple[int, bool]] = []
    done = asyncio.Event()

    def record(index: int) -> None:
        ran.append((index, threading.get_ident() == threading.main_thread().ident))
        if index == 3:
            done.set()

    def from_a_thread() -> None:
        for index in range(3):
            bridge.submit(lambda index=index: record(index))  # type: ignore[misc]

    worker = threading.Thread(target=from_a_thread)
    worker.start()
    await asyncio.to_thread(worker.join)
    # On the loop's own thread a call runs at once, after whatever was queued before it.
    bridge.submit(lambda: record(3))
    await asyncio.wait_for(done.wait(), 5)

    assert ran == [(0, True), (1, True), (2, True), (3, True)]


def test_every_scenario_runs_in_exactly_one_group() -> None:
    grouped = [name for group in GROUPS for name in group]

    assert sorted(grouped) == sorted(SCENARIOS)


def test_lifecycle_names() -> None:
    assert event_names.domain_lifecycle(0, 0) == ("defined", "added")
    assert event_names.domain_lifecycle(2, 0) == ("started", "booted")
    assert event_names.domain_lifecycle(3, 0) == ("suspended", "paused")
    assert event_names.domain_lifecycle(4, 0) == ("resumed", "unpaused")
    assert event_names.domain_lifecycle(5, 0) == ("stopped", "shutdown")
    assert event_names.domain_lifecycle(5, 1) == ("stopped", "destroyed")
    assert event_names.domain_lifecycle(5, 3) == ("stopped", "migrated")
    assert event_names.domain_lifecycle(5, 4) == ("stopped", "saved")
    assert event_names.domain_lifecycle(5, 5) == ("stopped", "failed")
    assert event_names.domain_lifecycle(6, 1) == ("shutdown", "guest")
    assert event_names.domain_lifecycle(7, 0) == ("pmsuspended", "memory")
    assert event_names.domain_lifecycle(8, 0) == ("crashed", "panicked")
    assert event_names.domain_lifecycle(1, 1) == ("undefined", "renamed")
    # Numbers from a newer libvirt are named, not dropped.
    assert event_names.domain_lifecycle(99, 0) == ("unknown", "unknown")
    assert event_names.domain_lifecycle(5, 99) == ("stopped", "unknown")
    assert [event_names.network_lifecycle(number) for number in range(4)] == [
        "defined",
        "undefined",
        "started",
        "stopped",
    ]
    assert [event_names.pool_lifecycle(number) for number in range(6)] == [
        "defined",
        "undefined",
        "started",
        "stopped",
        "created",
        "deleted",
    ]
    assert [event_names.close_reason(number) for number in range(5)] == [
        "error",
        "eof",
        "keepalive",
        "client",
        "unknown",
    ]
    assert [event_names.metadata_kind(number) for number in range(3)] == ["description", "title", "element"]


def test_every_lifecycle_event_has_its_detail_table() -> None:
    assert set(event_names.DOMAIN_EVENTS.values()) == set(event_names.DOMAIN_EVENT_DETAILS)
    assert all(event_names.DOMAIN_EVENT_DETAILS.values())
