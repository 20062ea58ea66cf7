"""Inventory at scale: full reconcile of 100 hosts x 100 VMs, the VM list at 10,000 VMs, event -> browser latency.

Prints numbers; asserts nothing. Three parts:

(a) reconcile: writes 100 libvirt test-driver node files (``test:///<abs path>.xml``, 100 domains
    each, states mixed through ``<test:runstate>``) under a temporary directory in var/, adds 100
    hosts, and times a full reconcile of all of them with the code the ``host.reconcile``
    operation runs (``virt.get_inventory`` + ``hosts.inventory.host_reconcile``): first pass (10,000
    new rows), unchanged pass, and a pass where 10% of the guests changed state.
(b) VM list: server time of ``/vms/`` through Django's test Client in this process (no network),
    unfiltered and filtered (``?state=running&search=...``), p50/p95, as an administrator and as a
    member of 10 hosts, plus the number of queries per page.
(c) event -> browser: starts ``manage.py watch_hosts`` and daphne as subprocesses, connects a
    token-authenticated WebSocket to /ws/events/, and suspends/resumes a tiny guest on the REAL lab
    host (qemu:///system) ``--events`` times through the libvirt API; the latency is from just
    before the API call to the ``vm.state`` message's arrival at the client (p50/p95/max), and
    from the call's return.

Everything it creates (hosts, VM rows, users, node files, the lab guest) is removed at the end.
It needs its own database, given by DATABASE_URL (created and migrated if missing), and Redis:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kvmweb_bench REDIS_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python bench/inventory_scale.py [--hosts 100] [--vms 100] [--events 1000] [--no-events]

Part (c) needs the lab (scripts/lab/lab.sh start).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds http.py, which would shadow the standard library module: run from the project root instead.
sys.path[0] = str(ROOT)
os.chdir(ROOT)
if not os.environ.get("DATABASE_URL"):
    sys.exit("Set DATABASE_URL to a database of the benchmark's own (see the docstring).")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kvmweb.settings")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid as uuidlib  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

from bench.measure import ensure_database  # noqa: E402

ensure_database()

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402

from bench.measure import percentile  # noqa: E402
from hosts.inventory import host_reconcile  # noqa: E402
from hosts.models import Host  # noqa: E402
from kvmweb import virt  # noqa: E402
from tests.nodefiles import Guest, write_node  # noqa: E402
from vms.models import VirtualMachine  # noqa: E402

PREFIX = "bench-inv-"
ASGI = "kvmweb.asgi:application"
STATES = ["running"] * 6 + ["shutoff"] * 3 + ["paused"]  # 60% running, 30% off, 10% paused


def spread(values: list[float]) -> str:
    return f"p50 {percentile(values, 0.5):.1f} ms, p95 {percentile(values, 0.95):.1f} ms, max {max(values):.1f} ms"


# -- (a) reconcile ----------------------------------------------------------------------------------


def guests_of(host_index: int, count: int, rng: random.Random, previous: list[Guest] | None = None) -> list[Guest]:
    if previous is None:
        return [
            Guest(f"vm-{host_index:03d}-{i:03d}", str(uuidlib.uuid4()), rng.choice(STATES), vcpus=1 + i % 4)
            for i in range(count)
        ]
    # About 10% of the guests are paused or resumed. (Not started or stopped: the test driver numbers its
    # running domains on load, so one stop would renumber, and change the XML of, every domain after it.)
    flip = {"running": "paused", "paused": "running"}
    return [
        Guest(g.name, g.uuid, flip.get(g.state, g.state) if rng.random() < 0.1 else g.state, g.vcpus) for g in previous
    ]


def reconcile_all(hosts: list[Host]) -> tuple[float, list[float], list[float], dict[str, int]]:
    """Reconcile every host in turn; returns wall seconds, per-host libvirt ms and database ms, summed counts."""
    virt.close_all()  # the test driver reads its node file when a connection opens
    read_ms, write_ms, totals = [], [], {"vms_new": 0, "vms_changed": 0, "vms_gone": 0}
    began = time.perf_counter()
    for host in hosts:
        t0 = time.perf_counter()
        inventory = virt.get_inventory(host.virt_target())
        t1 = time.perf_counter()
        result = host_reconcile(host=host, inventory=inventory)
        t2 = time.perf_counter()
        read_ms.append((t1 - t0) * 1000)
        write_ms.append((t2 - t1) * 1000)
        for key in totals:
            totals[key] += result[key]
    return time.perf_counter() - began, read_ms, write_ms, totals


def bench_reconcile(hosts: list[Host], files: list[Path], guests: list[list[Guest]], rng: random.Random) -> None:
    print(f"\n(a) full reconcile: {len(hosts)} hosts x {len(guests[0])} VMs (test-driver node files, sequential)")
    for label in ("first (all new)", "unchanged", "~7% changed state"):
        if label == "~7% changed state":
            for i, path in enumerate(files):
                guests[i] = guests_of(i, len(guests[i]), rng, guests[i])
                write_node(path, guests[i])
        seconds, read_ms, write_ms, totals = reconcile_all(hosts)
        print(
            f"  {label:18} {seconds:6.2f} s total; per host: libvirt read {spread(read_ms)}; "
            f"database {spread(write_ms)}; new {totals['vms_new']}, changed {totals['vms_changed']}"
        )


# -- (b) the VM list ----------------------------------------------------------------------------------


class QueryCount:
    """Counted at the cursor: the request-started signal empties connection.queries mid-request."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Callable[..., Any], sql: str, *rest: Any) -> Any:
        self.count += 1
        return execute(sql, *rest)


def bench_list(admin: Any, member: Any, rounds: int) -> None:
    total = VirtualMachine.objects.count()
    print(f"\n(b) VM list page at {total:,} VMs (server time, in-process test Client, {rounds} requests per line)")
    for who, user in (("admin", admin), ("member of 10 hosts", member)):
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        for label, url in (
            ("unfiltered", "/vms/"),
            ("filtered", "/vms/?state=running&search=vm-042"),
            ("search only", "/vms/?search=vm-07"),
            ("page 20, by state", "/vms/?sort=state&page=20"),
        ):
            response = client.get(url)  # warm-up, and the status check
            if response.status_code != 200:
                print(f"  {who:18} {label:18} HTTP {response.status_code}: skipped")
                continue
            queries = QueryCount()
            with connection.execute_wrapper(queries):
                client.get(url)
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
            print(f"  {who:18} {label:18} {spread(times)}; {queries.count} queries")


# -- (c) event -> browser -------------------------------------------------------------------------------


@contextlib.contextmanager
def process(args: list[str], log: Path, ready: Callable[[], bool], what: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start; see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    """A WebSocket client in its own thread that stamps each message with its arrival time."""

    def __init__(self, url: str) -> None:
        self.messages: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.ws = ws_connect(url, origin="http://localhost", open_timeout=10)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):
            for raw in self.ws:
                self.messages.put((time.perf_counter(), json.loads(raw)))

    def wait(self, accept: Callable[[dict[str, Any]], bool], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            at, message = self.messages.get(timeout=max(0.001, deadline - time.monotonic()))
            if accept(message):
                return at

    def close(self) -> None:
        self.ws.close()


def pause_and_resume() -> tuple[Callable[[virt.HostTarget, str], None], Callable[[virt.HostTarget, str], None]]:
    """The adapter's suspend/resume; until it has them, its connection (this script imports no libvirt)."""
    suspend, resume = getattr(virt, "suspend_domain", None), getattr(virt, "resume_domain", None)
    if suspend is not None and resume is not None:
        return suspend, resume
    from kvmweb.virt.connection import connect

    def call(target: virt.HostTarget, uuid: str, action: str) -> None:
        with connect(target) as conn:
            getattr(conn.lookupByUUIDString(uuid), action)()

    return (lambda t, u: call(t, u, "suspend")), (lambda t, u: call(t, u, "resume"))


def bench_events(count: int, work: Path, admin: Any) -> None:
    from tests.lab.guests import guest_spec, remove_guest
    from tests.lab.hosts import describe_lab, lab_running

    print(f"\n(c) libvirt event -> WebSocket client, {count} state changes on the real lab host")
    if not lab_running():
        print("  the lab is not running (scripts/lab/lab.sh start): skipped")
        return
    lab = describe_lab()
    name = f"bench-lat-p{os.getpid()}"
    remove_guest(lab, name, delete_volume=False)
    summary = virt.define_domain(lab.target, _guest_xml(guest_spec, name))
    uuid = summary.uuid
    host = Host.objects.create(name=f"{PREFIX}lab", uri=lab.uri)
    token = Token.objects.get_or_create(user=admin)[0].key
    port = free_port()
    watcher_log, daphne_log = work / "watch_hosts.log", work / "daphne.log"
    env_python = sys.executable
    suspend, resume = pause_and_resume()
    try:
        virt.start_domain(lab.target, uuid)
        watcher = [env_python, "manage.py", "watch_hosts", "-v", "3"]
        daphne = [str(Path(env_python).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port), ASGI]
        with (
            process(watcher, watcher_log, lambda: _connected(host), "watch_hosts"),
            process(daphne, daphne_log, lambda: port_open(port), "daphne"),
        ):
            inbox = Inbox(f"ws://127.0.0.1:{port}/ws/events/?token={token}")
            inbox.wait(lambda m: m["type"] == "hello", 10)
            from_call, from_return, calls, received = [], [], [], []
            version = 0

            def changed(state: str) -> Callable[[dict[str, Any]], bool]:
                return lambda m: m.get("vm") == uuid and m["state"] == state and m["version"] > version

            for i in range(count + 20):  # the first 20 warm up connections and caches
                action, state = (suspend, "paused") if i % 2 == 0 else (resume, "running")
                t0 = time.perf_counter()
                action(lab.target, uuid)
                t1 = time.perf_counter()
                at = inbox.wait(changed(state), 10)
                version += 1
                received.append(at)
                if i >= 20:
                    from_call.append((at - t0) * 1000)
                    from_return.append((at - t1) * 1000)
                    calls.append((t1 - t0) * 1000)
            inbox.close()
        watched = watcher_timings(watcher_log, uuid)
        print(f"  from just before the API call: {spread(from_call)}")
        print(f"  from the API call's return:    {spread(from_return)}")
        print(f"  the API call itself:           {spread(calls)}")
        over = sum(1 for v in from_call if v > 25)
        print(f"  {over} of {len(from_call)} changes over 25 ms from just before the call")
        if len(watched) == len(received):
            # time.perf_counter() and the watcher's time.monotonic() are both CLOCK_MONOTONIC on Linux.
            from_event = [(at - w["event_at"]) * 1000 for at, w in zip(received, watched, strict=True)][20:]
            inside = watched[20:]
            print(f"  from libvirt's event callback in the watcher to the client: {spread(from_event)}")
            print(f"    of which fetching the record: {spread([w['fetched'] for w in inside])}")
            print(f"    writing the row (cumulative): {spread([w['written'] for w in inside])}")
            print(f"    sent to Redis (cumulative):   {spread([w['sent'] for w in inside])}")
        else:
            print(f"  (the watcher logged {len(watched)} sends for {len(received)} messages: no per-stage split)")
    finally:
        remove_guest(lab, name, delete_volume=False)
        Host.objects.filter(pk=host.pk).delete()


def watcher_timings(log: Path, uuid: str) -> list[dict[str, float]]:
    """The watcher's own per-event timings (manage.py watch_hosts -v 3), in order, for one VM."""
    pattern = re.compile(
        rf"domain {uuid} sent ([0-9.]+) ms after the event \(fetched \+([0-9.]+), written \+([0-9.]+)\) "
        r"event_at=([0-9.]+)"
    )
    rows = []
    for match in pattern.finditer(log.read_text(errors="replace")):
        sent, fetched, written, event_at = map(float, match.groups())
        rows.append({"sent": sent, "fetched": fetched, "written": written, "event_at": event_at})
    return rows


def _guest_xml(guest_spec: Callable[..., Any], name: str) -> str:
    from kvmweb.virt.xml import build_domain_xml

    return build_domain_xml(guest_spec(name, data_disk=False))


def _connected(host: Host) -> bool:
    host.refresh_from_db(fields=["state"])
    return host.state == Host.State.CONNECTED


# -- main ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--vms", type=int, default=100, help="VMs per host")
    parser.add_argument("--rounds", type=int, default=50, help="requests per VM list variant")
    parser.add_argument("--events", type=int, default=1000, help="state changes for (c)")
    parser.add_argument("--no-events", action="store_true", help="skip (c), which needs the lab")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    User = get_user_model()
    cleanup()
    work = Path(tempfile.mkdtemp(prefix="bench-inventory-", dir=ROOT / "var"))
    rng = random.Random(42)
    try:
        guests = [guests_of(i, args.vms, rng) for i in range(args.hosts)]
        files = [work / f"host-{i:03d}.xml" for i in range(args.hosts)]
        hosts = [
            Host.objects.create(name=f"{PREFIX}{i:03d}", uri=write_node(path, guests[i]), state=Host.State.CONNECTED)
            for i, path in enumerate(files)
        ]
        admin = User.objects.create_superuser(username=f"{PREFIX}admin", email="", password=None)
        member = User.objects.create_user(username=f"{PREFIX}member", email="", password=None)
        for host in hosts[:10]:
            host.members.add(member)
        bench_reconcile(hosts, files, guests, rng)
        bench_list(admin, member, args.rounds)
        Host.objects.filter(name__startswith=PREFIX).delete()  # (c) watches the lab host alone
        if not args.no_events:
            bench_events(args.events, work, admin)
    finally:
        virt.close_all()
        cleanup()
        shutil.rmtree(work, ignore_errors=True)


def cleanup() -> None:
    Host.objects.filter(name__startswith=PREFIX).delete()  # their VM, network and pool rows go with them
    get_user_model().objects.filter(username__startswith=PREFIX).delete()


if __name__ == "__main__":
    main()
