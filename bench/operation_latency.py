"""Request → task start latency for operations: POST an action through the API, measure until a worker claims it.

Starts its own Celery worker against the configured database and Redis (DATABASE_URL, REDIS_URL), runs N
host refreshes on simulated `test:///default` hosts through the REST API, and prints p50/p95 of
(operation.started - operation.created) and the throughput. The hosts it creates are removed afterwards.

    .venv/bin/python bench/operation_latency.py [--count 200] [--concurrency 2] [--pool prefork]

Measured on the development machine (2 cores, PostgreSQL, prefork with 2 processes, 200 operations):
see the latest closing note; numbers are printed, never asserted.
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds http.py, which would shadow the standard library module: run from the project root instead.
sys.path[0] = str(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kvmweb.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from bench.measure import percentile, start_worker, wait_for  # noqa: E402
from hosts.models import Host  # noqa: E402
from kvmweb.operations.models import Operation  # noqa: E402

PREFIX = "bench-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    args = parser.parse_args()

    User = get_user_model()
    admin, _ = User.objects.get_or_create(username=f"{PREFIX}admin", defaults={"is_staff": True, "is_superuser": True})
    token, _ = Token.objects.get_or_create(user=admin)
    Host.objects.filter(name__startswith=PREFIX).delete()
    hosts = Host.objects.bulk_create(
        Host(name=f"{PREFIX}{i}", uri="test:///default", state=Host.State.CONNECTED) for i in range(args.count)
    )
    api = Client(HTTP_AUTHORIZATION=f"Token {token.key}", HTTP_HOST="localhost")
    log = ROOT / "var" / "bench-worker.log"
    log.parent.mkdir(exist_ok=True)
    worker = start_worker(log, pool=args.pool, concurrency=args.concurrency)
    try:
        # One warm-up so connection set-up is not counted as queue latency.
        api.post(f"/api/v1/hosts/{hosts[0].pk}/actions/refresh/")
        wait_for(lambda: not Operation.objects.filter(status__in=Operation.ACTIVE).exists(), 30)
        paced = run_phase(api, hosts, paced=True)
        burst = run_phase(api, hosts, paced=False)
    finally:
        worker.terminate()
        worker.wait(30)
    print(f"worker: pool={args.pool} concurrency={args.concurrency}, {args.count} operations per phase")
    for name, (ids, elapsed) in (("paced (one at a time)", paced), ("burst (all at once)", burst)):
        report(name, ids, elapsed)
    Operation.objects.filter(target_type="host", target_id__in=[str(h.pk) for h in hosts]).delete()
    Host.objects.filter(name__startswith=PREFIX).delete()
    admin.delete()


def run_phase(api: Client, hosts: list[Host], *, paced: bool) -> tuple[list[int], float]:
    """Paced: the next request waits until the previous operation started (pure latency).
    Burst: every request at once (latency includes queueing behind the others)."""
    began = time.monotonic()
    ids = []
    for host in hosts:
        response = api.post(f"/api/v1/hosts/{host.pk}/actions/refresh/")
        op_id = response.json()["operation"]["id"]
        ids.append(op_id)
        if paced:
            wait_for(lambda op_id=op_id: Operation.objects.filter(pk=op_id, started__isnull=False).exists(), 30)
    wait_for(lambda: not Operation.objects.filter(pk__in=ids, status__in=Operation.ACTIVE).exists(), 300)
    return ids, time.monotonic() - began


def report(name: str, ids: list[int], elapsed: float) -> None:
    ops = list(Operation.objects.filter(pk__in=ids))
    latencies = [(op.started - op.created).total_seconds() * 1000 for op in ops if op.started]
    ok = sum(op.status == "succeeded" for op in ops)
    print(
        f"{name}: request -> task start p50 {percentile(latencies, 0.5):.1f} ms, "
        f"p95 {percentile(latencies, 0.95):.1f} ms; {ok}/{len(ops)} succeeded; "
        f"{len(ops) / elapsed:.0f} operations/s"
    )


if __name__ == "__main__":
    main()
