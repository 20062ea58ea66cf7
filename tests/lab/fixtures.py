"""pytest fixtures for the real KVM lab (session scope: each is set up once per test run).

A fixture that cannot bring the lab up FAILS the tests that use it (pytest.fail), never skips.
Teardown undoes only what the fixture itself started: a lab that already ran (``make test`` starts
it before pytest, ``make run`` for the demo) keeps running, and so does a lab that another test
run on the same machine still uses (tests/lab/locks.py).

- ``lab_host``: the LabHost of the lab (``.uri``, ``.netns``, ``.host_path()``).
- ``libvirt_host``: its libvirt URI, ``qemu:///system``.
- ``tiny_guest``: a running Guest ``it-tiny-p<pid>`` with a qcow2 data disk (``.name``, ``.uuid``,
  ``.serial_log``, ``.vnc_socket``, ``.wait_for_marker(timeout)``, ``.agent()``, ...).
- ``running_tiny_guest``: ``tiny_guest``, booted again if an earlier test shut it down.
- ``two_hosts``: TwoHosts with ``.h1``/``.h2`` (``.uri`` = qemu+unix:///system?socket=...,
  ``.address`` = migration address, ``.tcp_uri`` = the p2p migration target), ``.uris``.
- ``unique_guest_name``: makes guest names unique to this test run (``it-<base>-p<pid>``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.lab.errors import LabError
from tests.lab.guests import Guest, ensure_guest, remove_guest, remove_stale_test_guests, unique_guest_name
from tests.lab.hosts import LabHost, TwoHosts, start_lab, start_two_hosts, stop_lab, stop_two_hosts
from tests.lab.locks import LabUsers


@pytest.fixture(scope="session")
def lab_host() -> Iterator[LabHost]:
    users = LabUsers("lab")
    users.acquire()
    try:
        host, started = start_lab()
        remove_stale_test_guests(host)
    except LabError as exc:
        users.release()
        pytest.fail(f"the KVM lab did not start (scripts/lab/lab.sh start):\n{exc}", pytrace=False)
    yield host
    if users.last_user() and started:
        stop_lab()


@pytest.fixture(scope="session")
def libvirt_host(lab_host: LabHost) -> str:
    return lab_host.uri


@pytest.fixture(scope="session")
def guest_name() -> Callable[[str], str]:
    return unique_guest_name


@pytest.fixture(scope="session")
def tiny_guest(lab_host: LabHost) -> Iterator[Guest]:
    name = unique_guest_name("tiny")
    try:
        remove_guest(lab_host, name)
        guest = ensure_guest(lab_host, name, data_disk=True, start=True, wait=True, timeout=60)
    except LabError as exc:
        pytest.fail(f"the tiny guest did not come up:\n{exc}", pytrace=False)
    yield guest
    remove_guest(lab_host, name)


@pytest.fixture
def running_tiny_guest(tiny_guest: Guest) -> Guest:
    """``tiny_guest``, started again (and booted) if an earlier test shut it down."""
    if not tiny_guest.is_running():
        tiny_guest.start()
        tiny_guest.wait_for_marker(60)
    return tiny_guest


@pytest.fixture(scope="session")
def two_hosts() -> Iterator[TwoHosts]:
    users = LabUsers("two-hosts")
    users.acquire()
    try:
        hosts, started = start_two_hosts()
    except LabError as exc:
        users.release()
        pytest.fail(f"the two lab hosts did not start (scripts/lab/two_hosts.sh start):\n{exc}", pytrace=False)
    yield hosts
    if users.last_user() and started:
        stop_two_hosts()
