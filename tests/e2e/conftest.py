"""The whole stack as `make run` starts it (nginx, gunicorn, daphne, a worker, the events watcher), on the test DB."""

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from hosts.messages import watcher_notify
from hosts.models import Host
from storage.models import StoragePool
from tests.lab.guests import POOL
from tests.stack import ROOT, free_port, process_env, running, wait_until

SHOTS = ROOT / "test-results" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def live_stack(django_db_setup, django_db_blocker, tmp_path_factory):  # type: ignore[no-untyped-def]
    var = tmp_path_factory.mktemp("var")
    port = free_port()
    with django_db_blocker.unblock():
        env = process_env(KVMWEB_VAR_DIR=str(var), PORT=str(port))
    python = sys.executable
    subprocess.run([python, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    conf = var / "run" / "nginx.conf"
    subprocess.run(
        [python, "scripts/nginx_conf.py", "--var-dir", str(var), "--listen", f"127.0.0.1:{port}", "--out", str(conf)],
        cwd=ROOT,
        env=env,
        check=True,
    )
    base = f"http://127.0.0.1:{port}"
    log = var / "honcho.log"
    args = ["honcho", "-f", str(ROOT / "Procfile"), "start", "proxy", "web", "ws", "worker", "events", "console"]
    with running(args, env=env, log=log, ready=lambda: _answers(f"{base}/login/"), what="the stack", timeout=90):
        yield {"base": base, "log": log}


@pytest.fixture(scope="module")
def browser() -> Browser:  # type: ignore[misc]
    executable = os.environ.get("KVMWEB_CHROMIUM", "/usr/bin/chromium")
    # Playwright's sync API keeps an event loop in this thread; the tests' own ORM calls are still sync.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


def screenshot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def watched_lab_host(live_stack, uri: str, *, ready: Callable[[Host], bool], what: str) -> Host:  # type: ignore[no-untyped-def]
    """The lab host, added as host_create adds it, once the events process has it connected and `ready` holds.

    The host is marked connected just after its inventory is indexed; until then it refuses changes.
    """
    host = Host.objects.create(name="lab", uri=uri)
    watcher_notify(host.pk)
    connected = Host.objects.filter(pk=host.pk, state=Host.State.CONNECTED)
    what = f"the events process connecting the lab host and indexing {what}"
    wait_until(lambda: connected.exists() and ready(host), timeout=30, what=what, log=live_stack["log"])
    host.refresh_from_db()
    return host


def pool_running(host: Host) -> bool:
    return StoragePool.objects.filter(host=host, name=POOL, state="running").exists()
