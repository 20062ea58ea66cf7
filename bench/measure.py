"""What the benchmark scripts share: percentiles, bounded waits, and a Celery worker of their own."""

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll a condition the benchmark cannot be told about, up to a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def start_worker(log: Path, *, pool: str, concurrency: int, queue: str = "default") -> subprocess.Popen[bytes]:
    """A Celery worker on `queue`; exits the benchmark if it is not ready within a minute."""
    args = [sys.executable, "-m", "celery", "-A", "kvmweb", "worker", "-Q", queue, "-l", "info"]
    args += ["--pool", pool, "--concurrency", str(concurrency), "-n", f"{queue}@%h"]
    log.parent.mkdir(exist_ok=True)
    worker = subprocess.Popen(args, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    if not wait_for(lambda: "ready." in log.read_text(errors="replace") or worker.poll() is not None, 60):
        worker.terminate()
        sys.exit(f"the worker did not start; see {log}")
    return worker
