#!/usr/bin/env python3
"""HTTP benchmark: one page under 10 concurrent keep-alive connections for N seconds.

Prints req/s and p50/p95/p99 latency; never asserts. Only loopback targets are allowed,
and every run is bounded in time.

    # against a running `make run` (log in with a password, or pass a session cookie)
    .venv/bin/python bench/http.py --path /hosts/ --username admin --password '...'
    .venv/bin/python bench/http.py --path /hosts/ --session <sessionid>

    # start each setup itself on a free loopback port, seeded with --rows hosts, and compare:
    # (a) daphne alone, (b) gunicorn with 2 sync workers, (c) the full stack (nginx in
    # front of gunicorn and daphne on unix sockets, as `make run` runs it)
    .venv/bin/python bench/http.py --compare

Reference numbers (2 cores, a 50-row page, 10 connections), which chose gunicorn for
pages and daphne only for /ws/:
    daphne alone                  148 req/s   p50 64 ms
    gunicorn, 2 sync workers      626 req/s   p50 15 ms
Measured with this script on 2026-11-27, 2 cores, SQLite, 10 connections. The machine
was busy with other work (TCG-emulated lab guests, headless Chromium, test runs: load
average 4-6), and the client shares the cores with the servers, so read the ratios,
not the absolute numbers:
  --compare --anonymous --path /login/ --duration 5 (a small page):
    (a) daphne alone              142 req/s   p50  61 ms   p95 155 ms   p99 279 ms
    (b) gunicorn, 2 sync workers  218 req/s   p50  23 ms   p95 169 ms   p99 202 ms
    (c) nginx+gunicorn+daphne     154 req/s   p50  46 ms   p95 205 ms   p99 393 ms
  --compare (/hosts/ listing 50 hosts, a 150 KB page costing ~25 ms in-process):
    (a) daphne alone               19 req/s   p50 454 ms   p95  945 ms
    (b) gunicorn, 2 sync workers   18 req/s   p50 211 ms   p95 1780 ms
    (c) nginx+gunicorn+daphne      25 req/s   p50 318 ms   p95 1042 ms
"""

from __future__ import annotations

import os
import sys

# This file is named http.py: drop its own directory from the path, or `import http`
# (urllib's too) would find this script instead of the standard library.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse
import asyncio
import contextlib
import http.cookiejar
import ipaddress
import re
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


# --- the load generator -----------------------------------------------------------


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def summary(self) -> dict[str, float]:
        lat = sorted(self.latencies)
        if not lat:
            return {"rps": 0.0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "errors": self.errors}

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

        return {
            "rps": len(lat) / self.elapsed,
            "p50": pct(0.50),
            "p95": pct(0.95),
            "p99": pct(0.99),
            "mean": statistics.fmean(lat) * 1000,
            "errors": self.errors,
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; return its status and whether the server keeps the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip().lower()
    keep = headers.get("connection") != "close"
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()
        keep = False
    return status, keep


async def _connection(
    host: str, port: int, request: bytes, deadline: float, record_from: float, result: Result
) -> None:
    reader = writer = None
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.monotonic()
            writer.write(request)
            status, keep = await _read_response(reader)
            end = time.monotonic()
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            result.errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
            continue
        if start >= record_from:
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.latencies.append(end - start)
            else:
                result.errors += 1
        if not keep:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run_load(url: str, *, cookie: str | None, connections: int, duration: float, warmup: float) -> Result:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Accept: text/html", "Connection: keep-alive"]
    if cookie:
        lines.append(f"Cookie: sessionid={cookie}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def main() -> Result:
        result = Result()
        start = time.monotonic()
        record_from = start + warmup
        deadline = record_from + duration
        await asyncio.gather(
            *(_connection(host, port, request, deadline, record_from, result) for _ in range(connections))
        )
        result.elapsed = time.monotonic() - record_from
        return result

    return asyncio.run(main())


# --- helpers ---------------------------------------------------------------------


def require_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"bench/http.py only sends traffic to loopback addresses, not {host!r}")


def login(base: str, username: str, password: str) -> str:
    """Log in through the login form and return the session cookie."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login/", timeout=10).read().decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if not match:
        raise SystemExit("no CSRF token on the login page")
    data = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": match.group(1)}
    ).encode()
    request = urllib.request.Request(f"{base}/login/", data=data, headers={"Referer": f"{base}/login/"})
    opener.open(request, timeout=10).read()
    for cookie in jar:
        if cookie.name == "sessionid":
            return cookie.value or ""
    raise SystemExit("login failed: no session cookie (wrong credentials?)")


def print_result(label: str, summary: dict[str, float]) -> None:
    print(
        f"{label:<30} {summary['rps']:8.1f} req/s   p50 {summary['p50']:7.1f} ms   "
        f"p95 {summary['p95']:7.1f} ms   p99 {summary['p99']:7.1f} ms   errors {int(summary['errors'])}",
        flush=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, cookie: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Cookie": f"sessionid={cookie}"} if cookie else {})
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer 200 within {timeout} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def started(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def seed(env: dict[str, str], rows: int) -> str:
    """Migrate a fresh database, add `rows` hosts and an admin; return the admin's session cookie."""
    python = str(VENV_BIN / "python")
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    script = f"""
from django.contrib.auth import get_user_model
from django.test import Client
from tests.factories import make_host
for i in range({rows}):
    make_host(f"bench-{{i:03d}}", uri="test:///default")
user = get_user_model().objects.create_superuser("bench", "", "bench-password")
client = Client()
client.force_login(user)
print(client.cookies["sessionid"].value)
"""
    out = subprocess.run(
        [python, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def compare(args: argparse.Namespace) -> None:
    var = Path(tempfile.mkdtemp(prefix="kvmweb-bench-"))
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "KVMWEB_VAR_DIR": str(var),
        "SECRET_KEY": "bench-only-secret-key",
        "DEBUG": "0",
        "REDIS_URL": args.redis_url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    env.pop("CHANNEL_REDIS_URL", None)
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    else:
        env.pop("DATABASE_URL", None)  # SQLite in the temporary var dir
    cookie = seed(env, args.rows)
    if args.anonymous:
        cookie = ""
    print(f"# {args.rows} hosts, GET {args.path}, {args.connections} connections, {args.duration:g} s each", flush=True)

    port = free_port()
    setups = {
        "daphne": (
            "(a) daphne alone",
            ["daphne", "-b", "127.0.0.1", "-p", str(port), "kvmweb.asgi:application"],
        ),
        "gunicorn": (
            "(b) gunicorn, 2 sync workers",
            ["gunicorn", "kvmweb.wsgi:application", "--workers", "2", "--bind", f"127.0.0.1:{port}"],
        ),
        "stack": (
            "(c) nginx+gunicorn+daphne",
            ["honcho", "-f", str(ROOT / "Procfile"), "-e", "/dev/null", "start", "proxy", "web", "ws"],
        ),
    }
    python = str(VENV_BIN / "python")
    subprocess.run([python, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [python, "scripts/nginx_conf.py", "--var-dir", str(var), "--listen", f"127.0.0.1:{port}",
         "--out", str(var / "run" / "nginx.conf")],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}{args.path}"
    for name in args.setups:
        label, command = setups[name]
        for sock in ("gunicorn.sock", "daphne.sock"):
            (var / "run" / sock).unlink(missing_ok=True)
        with started(command, env, var / f"{name}.log") as proc:
            wait_for(url, cookie, 60, proc, var / f"{name}.log")
            result = run_load(
                url, cookie=cookie, connections=args.connections, duration=args.duration, warmup=args.warmup
            )
        print_result(label, result.summary())
    print(f"# logs in {var}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of a running server (loopback)")
    parser.add_argument("--path", default="/hosts/", help="page to measure")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured (after the warm-up)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load not measured")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--username")
    parser.add_argument("--password", default=os.environ.get("KVMWEB_ADMIN_PASSWORD"))
    parser.add_argument("--session", help="a sessionid cookie instead of logging in")
    parser.add_argument("--anonymous", action="store_true", help="--compare: send no session cookie")
    parser.add_argument("--compare", action="store_true", help="start and compare setups (a), (b) and (c)")
    parser.add_argument("--setups", nargs="+", choices=["daphne", "gunicorn", "stack"],
                        default=["daphne", "gunicorn", "stack"])  # fmt: skip
    parser.add_argument("--rows", type=int, default=50, help="--compare: hosts seeded")
    parser.add_argument("--database-url", help="--compare: database (default SQLite in a temporary dir)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10", help="--compare: Redis")
    args = parser.parse_args()
    if not 0 < args.duration <= 300:
        parser.error("--duration must be within (0, 300] seconds")
    if not 0 < args.connections <= 100:
        parser.error("--connections must be within 1..100")

    if args.compare:
        compare(args)
        return
    base = args.url.rstrip("/")
    require_loopback(base)
    cookie = args.session
    if cookie is None and args.username:
        if not args.password:
            parser.error("--password (or KVMWEB_ADMIN_PASSWORD) is needed with --username")
        cookie = login(base, args.username, args.password)
    url = base + args.path
    result = run_load(url, cookie=cookie, connections=args.connections, duration=args.duration, warmup=args.warmup)
    print(f"# GET {url}, {args.connections} connections, {args.duration:g} s, statuses {result.statuses}")
    print_result("server", result.summary())


if __name__ == "__main__":
    main()
