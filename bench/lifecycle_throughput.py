"""Start/stop throughput through the REST API on simulated hosts, with real Celery workers.

Builds --workers libvirt test-driver hosts (node files under var/) that share --vms shut-off VMs,
each host with its own queue (`host.bench-life-<n>`) and one Celery worker process consuming it: the
test driver keeps its state inside the process that opened it, so a host is driven by one process,
which is how per-host queues deploy anyway. Then:

- burst: `start` and `force-off` through `POST /api/v1/vms/actions/<action>/` on --groups slices of
  the VMs in turn, each slice's next request sent once its last batch has ended (so the API queues
  one slice while the workers run the others), until --operations have run. It prints
  operations/s, how fast the API queued them, and request -> task start latency (p50/p95): a
  slice's batch lands at once, so that latency is mostly time spent in the queue behind it.
- paced: requests of --batch VMs, each sent once it leaves at most --window operations queued or
  running, so the latency is the pipeline's, not a backlog's: the rate the stack keeps up with a
  short wait. A request's VMs alternate between the hosts, so 16 VMs are a task of 8 on each (power
  actions run in batches, see vms/handlers.py); a window of 28 sends the next request once the one
  before has 12 operations left.
- one at a time: --single operations, each a single-VM request (`POST /api/v1/vms/<uuid>/actions/...`)
  sent when the one before has ended. Its request -> task start is the pipeline's own latency, with
  no queue in front.

An operation's end is heard as browsers hear it, pushed to the group of the user who asked for it.
Numbers are printed, never asserted.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kvmweb_bench .venv/bin/python bench/lifecycle_throughput.py

Issue 5's target: >= 200 ops/s and p50 <= 15 ms with 2 workers. The hosts, VMs, operations and audit events it
made are removed.
"""

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds http.py, which would shadow the standard library module: run from the project root instead.
sys.path[0] = str(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kvmweb.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("DEBUG", "0")  # as deployed: DEBUG records every query

import django  # noqa: E402

django.setup()

from channels.layers import get_channel_layer  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from bench.measure import ensure_database, percentile, start_worker  # noqa: E402
from hosts.inventory import host_reconcile  # noqa: E402
from hosts.models import Host  # noqa: E402
from kvmweb import virt  # noqa: E402
from kvmweb.audit.models import AuditEvent  # noqa: E402
from kvmweb.operations.models import Operation  # noqa: E402
from kvmweb.realtime.groups import user_group  # noqa: E402
from tests.nodefiles import Guest, write_node  # noqa: E402
from vms.models import VirtualMachine  # noqa: E402

PREFIX = "bench-life-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--operations", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=10, help="slices of the VMs whose bulk requests overlap")
    parser.add_argument("--batch", type=int, default=16, help="VMs in each request when paced")
    parser.add_argument("--window", type=int, default=28, help="most operations queued or running when paced")
    parser.add_argument("--single", type=int, default=200, help="operations sent one at a time")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one simulated host each")
    parser.add_argument("--threads", type=int, default=3, help="threads per worker process")
    args = parser.parse_args()

    ensure_database()
    call_command("migrate", verbosity=0)  # a fresh bench database is usable at once
    admin, _ = get_user_model().objects.get_or_create(
        username=f"{PREFIX}admin", defaults={"is_staff": True, "is_superuser": True}
    )
    token, _ = Token.objects.get_or_create(user=admin)
    api = Client(HTTP_AUTHORIZATION=f"Token {token.key}", HTTP_HOST="localhost")
    remove_leftovers()
    hosts, nodes = make_hosts(args.workers, args.vms)
    if connection.vendor == "postgresql":
        # As autovacuum keeps a deployed database (some development machines run with it off): without it,
        # earlier runs' dead rows slow every run after them, and the planner, lacking statistics on rows just
        # made, scans VMs by name instead of by UUID.
        connection.cursor().execute("VACUUM ANALYZE")
    workers = [
        start_worker(worker_log(n), pool="threads", concurrency=args.threads, queue=host.queue)
        for n, host in enumerate(hosts)
    ]
    uuids = [str(u) for u in VirtualMachine.objects.filter(host__in=hosts).values_list("uuid", flat=True)]
    ends = Ends(user_group(admin.pk))
    try:
        phases = {
            "burst": burst(api, ends, chunks(uuids, -(-len(uuids) // args.groups)), args.operations, window=0),
            f"paced ({args.batch} VMs a request, at most {args.window} in flight)": burst(
                api, ends, chunks(uuids, args.batch), args.operations, args.window
            ),
            "one at a time": one_at_a_time(api, ends, uuids, args.single),
        }
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)
    print(f"workers: {args.workers} processes x {args.threads} threads, one simulated host each; {len(uuids)} VMs")
    for label, phase in phases.items():
        report(label, phase)
    remove_leftovers()
    admin.delete()
    for node in nodes:
        node.unlink()
        node.parent.rmdir()


def remove_leftovers() -> None:
    """The bench's hosts (their VMs go with them), operations and audit events, from this run or a stopped one."""
    AuditEvent.objects.filter(actor_name__startswith=PREFIX).delete()
    Operation.objects.filter(requested_by__username__startswith=PREFIX).delete()
    Host.objects.filter(name__startswith=PREFIX).delete()


def worker_log(n: int) -> Path:
    return ROOT / "var" / f"bench-lifecycle-worker{n}.log"


def make_hosts(count: int, vms: int) -> tuple[list[Host], list[Path]]:
    hosts, nodes = [], []
    for n in range(count):
        node = Path(tempfile.mkdtemp(prefix="kvmweb-bench-", dir=ROOT / "var")) / "node.xml"
        guests = [Guest(f"{PREFIX}{n}-{i}", str(uuid.uuid4()), state="shutoff") for i in range(n, vms, count)]
        uri = write_node(node, guests)
        host = Host.objects.create(
            name=f"{PREFIX}host{n}", uri=uri, state=Host.State.CONNECTED, queue=f"host.{PREFIX}{n}"
        )
        host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
        hosts.append(host)
        nodes.append(node)
    return hosts, nodes


@dataclass
class Phase:
    ids: list[int]
    elapsed: float
    requesting: float  # seconds spent inside API requests


class Ends:
    """The operations whose end the bench has heard of, pushed to `group` as browsers get them.

    The requester's group, not the admins': it hears operations only, not every VM's state as well.
    Hearing it beats asking PostgreSQL every few milliseconds, which took CPU from what is measured. The
    listener is a process of its own, as browsers' sockets are served by daphne, not by the API: decoding
    every push in the API's process would hold its interpreter lock while requests wait.
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self.ended: set[int] = set()
        self.in_flight: set[int] = set()
        self.changed = threading.Condition()
        receiving, sending = multiprocessing.Pipe(duplex=False)
        self.listener = multiprocessing.get_context("spawn").Process(
            target=listen_for_ends, args=(group, sending), name="bench-ends", daemon=True
        )
        self.listener.start()
        if not receiving.poll(60) or receiving.recv() != "ready":
            sys.exit(f"could not join the group {group}")
        threading.Thread(target=self._collect, args=(receiving,), name="bench-ends", daemon=True).start()

    def _collect(self, receiving: Connection) -> None:
        while True:
            try:
                ended = receiving.recv()
            except EOFError:  # the listener went with the bench's exit
                return
            with self.changed:
                self.ended.update(ended)
                self.in_flight.difference_update(ended)
                self.changed.notify_all()

    def wait(self, ids: list[int]) -> None:
        with self.changed:
            if self.changed.wait_for(lambda: self.ended.issuperset(ids), 120):
                return
        if Operation.objects.filter(pk__in=ids, status__in=Operation.ACTIVE).exists():
            sys.exit("operations did not finish within 120 s")
        sys.exit("operations ended but their pushes never came")

    def sent(self, ids: list[int]) -> None:
        with self.changed:
            self.in_flight.update(op_id for op_id in ids if op_id not in self.ended)

    def wait_for_room(self, needed: int, window: int) -> None:
        """Until `needed` more operations keep at most `window` queued or running."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.in_flight) + needed <= window, 120)


def listen_for_ends(group: str, sending: Connection) -> None:
    """In the listener process: send the ids of operations that ended, a list per push received."""

    async def listen() -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        sending.send("ready")
        while True:
            message = (await layer.receive(channel))["message"]
            if message.get("type") == "operation" and message["operation"]["status"] not in Operation.ACTIVE:
                sending.send([message["operation"]["id"]])

    asyncio.run(listen())


def chunks(uuids: list[str], size: int) -> list[list[str]]:
    return [uuids[i : i + size] for i in range(0, len(uuids), size)]


def burst(api: Client, ends: Ends, slices: list[list[str]], operations: int, window: int) -> Phase:
    """Bulk requests over the slices of the VMs in turn. A slice's next request goes once its last
    batch has ended and fewer than `window` operations are queued or running (0: no bound)."""
    last: list[list[int]] = [[] for _ in slices]
    actions = ["start"] * len(slices)
    ids: list[int] = []
    requesting = 0.0
    began = time.monotonic()
    for turn in range(operations):
        if len(ids) >= operations:
            break
        k = turn % len(slices)
        ends.wait(last[k])
        if window:
            ends.wait_for_room(len(slices[k]), window)
        sent = time.monotonic()
        response = api.post(f"/api/v1/vms/actions/{actions[k]}/", {"vms": slices[k]}, content_type="application/json")
        requesting += time.monotonic() - sent
        last[k] = [op["id"] for op in response.json()["operations"]]
        ends.sent(last[k])
        ids += last[k]
        actions[k] = "force-off" if actions[k] == "start" else "start"
    ends.wait(ids)
    return Phase(ids, time.monotonic() - began, requesting)


def one_at_a_time(api: Client, ends: Ends, uuids: list[str], operations: int) -> Phase:
    """Start, then force off, each VM in turn: every request finds the queues empty."""
    ids: list[int] = []
    requesting = 0.0
    began = time.monotonic()
    for n in range(operations):
        vm, action = uuids[(n // 2) % len(uuids)], ("start", "force-off")[n % 2]
        sent = time.monotonic()
        response = api.post(f"/api/v1/vms/{vm}/actions/{action}/", {}, content_type="application/json")
        requesting += time.monotonic() - sent
        op_id = response.json()["operation"]["id"]
        ids.append(op_id)
        ends.wait([op_id])
    return Phase(ids, time.monotonic() - began, requesting)


def report(label: str, phase: Phase) -> None:
    ops = list(Operation.objects.filter(pk__in=phase.ids))
    latencies = [(op.started - op.created).total_seconds() * 1000 for op in ops if op.started]
    ok = sum(op.status == "succeeded" for op in ops)
    rate = len(ops) / phase.elapsed
    print(f"{label}: {len(ops)} operations, {ok} succeeded, {rate:.0f} operations/s over {phase.elapsed:.1f} s")
    print(f"  request -> task start: p50 {percentile(latencies, 0.5):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms")
    runs = [(op.finished - op.started).total_seconds() * 1000 for op in ops if op.started and op.finished]
    print(f"  task start -> end: p50 {percentile(runs, 0.5):.1f} ms, p95 {percentile(runs, 0.95):.1f} ms")
    print(f"  the API queued {len(ops) / phase.requesting:.0f} operations/s ({phase.requesting:.1f} s of requests)")
    for error, count in Counter(op.error for op in ops if op.status != "succeeded").most_common(3):
        print(f"  {count} failed: {error}")


if __name__ == "__main__":
    main()
