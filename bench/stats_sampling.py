"""One stats sampling round on a simulated host with N running domains: time and rows written.

Creates a libvirt test-driver host (a node file with --domains running guests) in the configured
database (DATABASE_URL, REDIS_URL; created and migrated if needed), runs --rounds rounds of
stats.sample_host exactly as the worker does (host lookup, one getAllDomainStats, the host's CPU
and memory, rates from Redis, one bulk insert, the watched ones published) and prints the time of
a round, split into reading libvirt and recording, with nobody watching and with every object
watched. The host and its points are removed afterwards.

It then times the 1 min rollup of one minute of 10 s points for --rollup-objects objects (synthetic
rows, removed afterwards).

    .venv/bin/python bench/stats_sampling.py [--domains 100] [--rounds 30] [--rollup-objects 10000]

Numbers are printed, never asserted.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds http.py, which would shadow the standard library module: run from the project root instead.
sys.path[0] = str(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kvmweb.settings")
os.environ.setdefault("DEBUG", "1")

import django  # noqa: E402

django.setup()

from datetime import UTC, datetime, timedelta  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from bench.measure import ensure_database  # noqa: E402
from hosts.models import Host  # noqa: E402
from stats import store  # noqa: E402
from stats.models import StatSample  # noqa: E402
from stats.services import sampler  # noqa: E402
from stats.services.rollup import rollup_bucket  # noqa: E402
from tests.nodefiles import Guest, write_node  # noqa: E402

NAME = "bench-stats"


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(values) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms"


def run(host: Host, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"round": [], "read": [], "record": []}
    read, record = sampler.read_host, sampler.stats_record

    def timed_read(target):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return read(target)
        finally:
            times["read"].append(time.perf_counter() - start)

    def timed_record(**kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return record(**kwargs)
        finally:
            times["record"].append(time.perf_counter() - start)

    sampler.read_host, sampler.stats_record = timed_read, timed_record
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            done = sampler.stats_sample_host(host_id=host.pk)
            times["round"].append(time.perf_counter() - start)
            assert done is not None
            times.setdefault("rows", []).append(done.rows)
            times.setdefault("published", []).append(done.published)
            # A new 10 s bucket every round, as in production (not waiting: the rows are upserts anyway).
            StatSample.objects.filter(object_key__in=keys_of(host)).delete()
    finally:
        sampler.read_host, sampler.stats_record = read, record
    return times


_keys: dict[int, list[str]] = {}


def keys_of(host: Host) -> list[str]:
    return _keys[host.pk]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--rollup-objects", type=int, default=10000)
    args = parser.parse_args()

    ensure_database()
    call_command("migrate", verbosity=0)
    guests = [Guest(name=f"bench-{i:04d}", uuid=str(uuid.uuid4())) for i in range(args.domains)]
    with tempfile.TemporaryDirectory() as tmp:
        uri = write_node(Path(tmp) / "node.xml", guests)
        Host.objects.filter(name=NAME).delete()
        host = Host.objects.create(name=NAME, uri=uri, state=Host.State.CONNECTED)
        _keys[host.pk] = [g.uuid for g in guests] + [str(host.pk)]
        try:
            sampler.stats_sample_host(host_id=host.pk)  # open and cache the connection, as a worker has
            quiet = run(host, args.rounds)
            store.watch_renew([f"vm:{g.uuid}" for g in guests] + [f"host:{host.pk}"])
            watched = run(host, args.rounds)
        finally:
            StatSample.objects.filter(object_key__in=keys_of(host)).delete()
            store.client().zrem(store.prefix() + "watched", *[f"vm:{g.uuid}" for g in guests], f"host:{host.pk}")
            host.delete()

    print(f"stats sampling: {args.domains} running domains on {uri.split('://')[0]}://, {connection.vendor}")
    for label, times in (("nobody watching", quiet), ("all watched", watched)):
        print(f"  {label}:")
        print(f"    round           {ms(times['round'])}")
        print(f"      read libvirt  {ms(times['read'])}")
        print(f"      record        {ms(times['record'])}")
        rows, published = int(statistics.median(times["rows"])), int(statistics.median(times["published"]))
        print(f"    rows per round  {rows}   published {published}")
    if args.rollup_objects:
        rollup(args.rollup_objects)


def rollup(objects: int) -> None:
    """One minute of 10 s points for `objects` VMs, averaged into 1 min points: the minutely job."""
    minute = datetime(2000, 1, 1, tzinfo=UTC)  # far from any real point
    prefix = "bench-rollup-"
    keys = [f"{prefix}{i:06d}" for i in range(objects)]
    StatSample.objects.filter(object_key__startswith=prefix).delete()
    StatSample.objects.bulk_create(
        (
            StatSample(
                kind="vm",
                object_key=key,
                resolution=10,
                ts=minute + timedelta(seconds=10 * i),
                cpu_pct=i,
                mem_used_kib=1024,
                mem_total_kib=2048,
                disk_rd_bps=1.0,
                disk_wr_bps=2.0,
                net_rx_bps=3.0,
                net_tx_bps=4.0,
            )
            for key in keys
            for i in range(6)
        ),
        batch_size=5000,
    )
    # One bucket: what each minutely run does (twice: the newest minute is made again, for late samples).
    try:
        start = time.perf_counter()
        written = rollup_bucket(source=10, resolution=60, start=minute)
        elapsed = time.perf_counter() - start
    finally:
        StatSample.objects.filter(object_key__startswith=prefix).delete()
    print(f"  1 min rollup of one minute, {objects} objects x 6 points: {elapsed * 1000:.0f} ms, {written} rows")


if __name__ == "__main__":
    main()
