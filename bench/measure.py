"""What the benchmark scripts share: percentiles, bounded waits, and a Celery worker of their own."""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import environ
import psycopg

ROOT = Path(__file__).resolve().parent.parent


def ensure_database() -> None:
    """Create the PostgreSQL database DATABASE_URL names, if it does not exist yet."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return
    db = environ.Env.db_url_config(url)
    if db["ENGINE"] != "django.db.backends.postgresql":
        return
    params = {"host": db["HOST"] or "127.0.0.1", "port": db["PORT"] or 5432, "user": db["USER"]}
    if db["PASSWORD"]:
        params["password"] = db["PASSWORD"]
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db["NAME"],)).fetchone():
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


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
