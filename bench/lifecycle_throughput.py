"""Start/stop throughput through the REST API on a simulated host, with a real Celery worker.

Builds a libvirt test-driver host with 100 shut-off VMs (a node file under var/), indexes it, starts
one Celery worker with 2 threads (one process, so both threads share the test driver's in-memory
state), then sends rounds of `start` and `force-off` for every VM through
`POST /api/v1/vms/actions/<action>/` until 1,000 operations have run. It prints operations/s and
request → task start latency (p50/p95), and how fast the API queued operations: when it queues them
faster than the worker runs them, the latency is mostly time spent waiting in the queue. Numbers are
printed, never asserted.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kvmweb_bench .venv/bin/python bench/lifecycle_throughput.py

Issue 5's target: >= 200 ops/s and p50 <= 15 ms. The hosts, VMs and operations it made are removed.
"""

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds http.py, which would shadow the standard library module: run from the project root instead.
sys.path[0] = str(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kvmweb.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from bench.measure import percentile, start_worker, wait_for  # noqa: E402
from hosts.inventory import host_reconcile  # noqa: E402
from hosts.models import Host  # noqa: E402
from kvmweb import virt  # noqa: E402
from kvmweb.operations.models import Operation  # noqa: E402
from tests.nodefiles import Guest, write_node  # noqa: E402
from vms.models import VirtualMachine  # noqa: E402

PREFIX = "bench-life-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--operations", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)  # a fresh bench database is usable at once
    node = Path(tempfile.mkdtemp(prefix="kvmweb-bench-", dir=ROOT / "var")) / "node.xml"
    uri = write_node(node, [Guest(f"{PREFIX}{i}", str(uuid.uuid4()), state="shutoff") for i in range(args.vms)])
    admin, _ = get_user_model().objects.get_or_create(
        username=f"{PREFIX}admin", defaults={"is_staff": True, "is_superuser": True}
    )
    token, _ = Token.objects.get_or_create(user=admin)
    host = Host.objects.create(name=f"{PREFIX}host", uri=uri, state=Host.State.CONNECTED)
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
    uuids = [str(u) for u in VirtualMachine.objects.filter(host=host).values_list("uuid", flat=True)]
    api = Client(HTTP_AUTHORIZATION=f"Token {token.key}", HTTP_HOST="localhost")
    log = ROOT / "var" / "bench-lifecycle-worker.log"
    worker = start_worker(log, pool="threads", concurrency=args.threads)
    ids: list[int] = []
    try:
        began = time.monotonic()
        requesting = 0.0
        action = "start"
        while len(ids) < args.operations:
            sent = time.monotonic()
            response = api.post(f"/api/v1/vms/actions/{action}/", {"vms": uuids}, content_type="application/json")
            requesting += time.monotonic() - sent
            batch = [op["id"] for op in response.json()["operations"]]
            ids += batch
            if not wait_for(
                lambda b=batch: not Operation.objects.filter(pk__in=b, status__in=Operation.ACTIVE).exists(), 120
            ):
                sys.exit("a round did not finish within 120 s")
            action = "force-off" if action == "start" else "start"
        elapsed = time.monotonic() - began
    finally:
        worker.terminate()
        worker.wait(30)
    ops = list(Operation.objects.filter(pk__in=ids))
    latencies = [(op.started - op.created).total_seconds() * 1000 for op in ops if op.started]
    ok = sum(op.status == "succeeded" for op in ops)
    print(f"worker: 1 process, {args.threads} threads; {args.vms} VMs; {len(ops)} operations, {ok} succeeded")
    print(f"throughput: {len(ops) / elapsed:.0f} operations/s over {elapsed:.1f} s (rounds of {args.vms})")
    print(f"the API queued {len(ids) / requesting:.0f} operations/s ({requesting:.1f} s of requests)")
    print(f"request -> task start: p50 {percentile(latencies, 0.5):.1f} ms, p95 {percentile(latencies, 0.95):.1f} ms")
    Operation.objects.filter(pk__in=ids).delete()
    host.delete()
    admin.delete()
    node.unlink()
    node.parent.rmdir()


if __name__ == "__main__":
    main()
