#!/usr/bin/env python3
"""Lab benchmark: boot N tiny guests in parallel on the real KVM lab; print times and memory.

Starts the lab (scripts/lab/lab.sh start) if it is not running and stops it again afterwards.
Defines bench-0 .. bench-{N-1} (tiny guest, 192 MiB, 1 vCPU, TCG, with the qcow2 data disk),
starts them all at once and reports, never asserts:
    - per guest: seconds from the start request to the serial boot marker
    - wall time until every guest has booted
    - RSS of each guest's QEMU process, and its CPU use while the guest idles
    - ACPI shutdown of all guests in parallel: seconds until every one is shut off
Then removes the guests.

    .venv/bin/python bench/lab_boot.py -n 4
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

from tests.lab.guests import Guest, ensure_guest, remove_guest  # noqa: E402
from tests.lab.hosts import LabHost, start_lab, stop_lab  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def qemu_pid(host: LabHost, name: str) -> int:
    return int(host.host_path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--guests", type=int, default=4, help="guests to boot in parallel (default 4)")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up on a guest after this many seconds")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU sampling (default 5)")
    args = parser.parse_args()
    if not 1 <= args.guests <= 16:
        parser.error("--guests must be between 1 and 16")

    t = time.monotonic()
    host, started = start_lab()
    print(
        f"lab host {host.uri} (netns {host.netns}) ready in {time.monotonic() - t:.2f} s"
        f"{' (started by this run)' if started else ' (already running)'}"
    )
    names = [f"bench-{i}" for i in range(args.guests)]
    try:
        for name in names:
            remove_guest(host, name)
        guests = [ensure_guest(host, name, start=False) for name in names]

        def boot(guest: Guest) -> float:
            begin = time.monotonic()
            guest.start()
            guest.wait_for_marker(args.timeout)
            return time.monotonic() - begin

        begin = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(guests)) as pool:
            boot_times = list(pool.map(boot, guests))
        wall = time.monotonic() - begin
        print(f"\nboot {len(guests)} guests in parallel (TCG, 192 MiB, 1 vCPU), start request -> boot marker:")
        for guest, seconds in zip(guests, boot_times, strict=True):
            print(f"  {guest.name:10s} {seconds:6.2f} s")
        print(
            f"  all booted after {wall:.2f} s (median {statistics.median(boot_times):.2f} s,"
            f" max {max(boot_times):.2f} s)"
        )

        time.sleep(2.0)  # let the guests settle into idle
        pids = {guest.name: qemu_pid(host, guest.name) for guest in guests}
        before = {name: cpu_ticks(pid) for name, pid in pids.items()}
        time.sleep(args.idle)
        print(f"\nQEMU process per guest (RSS, idle CPU over {args.idle:g} s):")
        rss_values = []
        for name, pid in pids.items():
            rss = rss_mib(pid)
            rss_values.append(rss)
            cpu = 100.0 * (cpu_ticks(pid) - before[name]) / CLK_TCK / args.idle
            print(f"  {name:10s} pid {pid:7d}  RSS {rss:6.1f} MiB  CPU {cpu:5.1f} %")
        print(f"  mean RSS {statistics.mean(rss_values):.1f} MiB per guest")

        def acpi_off(guest: Guest) -> float:
            begin = time.monotonic()
            guest.shutdown(mode="acpi")
            guest.wait_for_state("shutoff", timeout=args.timeout)
            return time.monotonic() - begin

        begin = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(guests)) as pool:
            off_times = list(pool.map(acpi_off, guests))
        print(
            f"\nACPI shutdown of all {len(guests)} in parallel: all shut off after {time.monotonic() - begin:.2f} s"
            f" (median {statistics.median(off_times):.2f} s)"
        )
    finally:
        for name in names:
            remove_guest(host, name)
        if started:
            stop_lab()
    return 0


if __name__ == "__main__":
    sys.exit(main())
