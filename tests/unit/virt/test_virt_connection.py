"""The per-process connection cache: reuse, reconnect, deadlines, and no host blocking another."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kvmweb import virt
from kvmweb.virt import connection
from kvmweb.virt.console import open_serial_console

SLOW = virt.HostTarget("qemu+ssh://slow.invalid/system")


class SlowHost:
    """An opener that hangs for one URI until released, as a host dropping packets would."""

    def __init__(self, real_opener: Any) -> None:
        self.real_opener = real_opener
        self.entered = threading.Event()
        self.release = threading.Event()
        self.late_connections: list[Any] = []

    def __call__(self, uri: str) -> Any:
        if uri != SLOW.effective_uri():
            return self.real_opener(uri)
        self.entered.set()
        self.release.wait(30)
        conn = self.real_opener("test:///default")
        self.late_connections.append(conn)
        return conn


@pytest.fixture
def slow_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowHost]:
    host = SlowHost(connection._opener)
    monkeypatch.setattr(connection, "_opener", host)
    yield host
    host.release.set()
    _join_open_threads()
    virt.close_all()


def _join_open_threads() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("libvirt-open"):
            thread.join(10)


def test_same_target_reuses_one_connection(target: virt.HostTarget) -> None:
    first = connection.get_connection(target)

    assert connection.get_connection(virt.HostTarget(target.uri)) is first


def test_connection_closed_behind_the_caches_back_is_reopened(target: virt.HostTarget) -> None:
    first = connection.get_connection(target)
    first.close()

    second = connection.get_connection(target)

    assert second is not first
    assert connection._alive(second)
    assert any(summary.name == "test" for summary in virt.list_domains(target))


def test_host_unreachable_inside_connect_drops_the_connection(target: virt.HostTarget) -> None:
    first = connection.get_connection(target)

    with pytest.raises(virt.HostUnreachable), connection.connect(target):
        raise virt.HostUnreachable("The host could not be reached.")

    assert connection.get_connection(target) is not first


def test_other_errors_inside_connect_keep_the_connection(target: virt.HostTarget) -> None:
    first = connection.get_connection(target)

    with pytest.raises(virt.NotFound), connection.connect(target) as conn:
        conn.lookupByName("no-such-domain")

    assert connection.get_connection(target) is first


def test_slow_open_times_out_as_unreachable_and_its_late_connection_is_closed(slow_host: SlowHost) -> None:
    started = time.monotonic()

    with pytest.raises(virt.HostUnreachable) as caught:
        connection.get_connection(SLOW, timeout=0.2)

    assert time.monotonic() - started < 5
    assert caught.value.transient is True
    assert caught.value.message == "The host did not answer within 0.2 s (qemu+ssh://slow.invalid/system)."
    slow_host.release.set()
    _join_open_threads()
    [late] = slow_host.late_connections
    assert not connection._alive(late)


def test_slow_host_does_not_block_another_host(slow_host: SlowHost, target: virt.HostTarget) -> None:
    outcome: dict[str, Any] = {}
    opener = threading.Thread(target=lambda: outcome.update(conn=connection.get_connection(SLOW, timeout=30)))
    opener.start()
    assert slow_host.entered.wait(10)

    started = time.monotonic()
    other = connection.get_connection(target, timeout=5)

    assert time.monotonic() - started < 5
    assert connection._alive(other)
    assert opener.is_alive(), "the slow open should still be waiting"
    slow_host.release.set()
    opener.join(10)
    assert connection._alive(outcome["conn"])


def test_second_request_for_a_host_still_connecting_gives_up_at_the_deadline(slow_host: SlowHost) -> None:
    first = threading.Thread(target=lambda: connection.get_connection(SLOW, timeout=30))
    first.start()
    assert slow_host.entered.wait(10)

    with pytest.raises(virt.HostUnreachable) as caught:
        connection.get_connection(SLOW, timeout=0.2)

    assert caught.value.message.startswith("Still connecting to qemu+ssh://slow.invalid/system")
    slow_host.release.set()
    first.join(10)


def test_configured_open_timeout_is_the_default_deadline(slow_host: SlowHost) -> None:
    before = connection._settings
    try:
        assert virt.configure(open_timeout=0.1).open_timeout == 0.1

        with pytest.raises(virt.HostUnreachable, match=r"within 0\.1 s"):
            connection.get_connection(SLOW)
    finally:
        connection._settings = before


def test_forked_child_opens_its_own_connection(target: virt.HostTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    parents = connection.get_connection(target)
    monkeypatch.setattr(connection.os, "getpid", lambda: -12345)

    childs = connection.get_connection(target)

    assert childs is not parents
    assert connection._alive(parents), "the parent's connection must be left open"
    monkeypatch.undo()
    parents.close()
    childs.close()


def test_event_loop_is_registered_once_and_keeps_running(target: virt.HostTarget) -> None:
    first = virt.register_event_loop()

    assert virt.register_event_loop() is first
    assert first.is_alive() and first.daemon
    assert virt.event_loop_running()
    # test:// has no keepalive; opening must shrug that off once an event loop exists.
    virt.close_all()
    assert connection._alive(connection.get_connection(target))


def test_no_libvirt_refuses_every_adapter_connection_even_a_cached_one(
    target: virt.HostTarget, scratch_domain: virt.DomainSummary, no_libvirt: Any
) -> None:
    uuid = scratch_domain.uuid
    virt.get_domain_xml(target, uuid)  # the connection is cached from here on
    calls = {
        "connect imported by name": lambda: virt.get_domain_xml(target, uuid),
        "the inventory": lambda: virt.get_inventory(target),
        "a console's own connection": lambda: open_serial_console(
            target, uuid, on_data=lambda data: None, on_closed=lambda reason: None
        ),
        "a fresh open (the events loop's)": lambda: connection._opener(target.effective_uri()),
    }

    with no_libvirt():
        for what, call in calls.items():
            with pytest.raises(AssertionError, match="a page or API read called libvirt"):
                call()
                pytest.fail(f"{what} reached libvirt")

    assert f"<uuid>{uuid}</uuid>" in virt.get_domain_xml(target, uuid)  # and the guard is gone after it
