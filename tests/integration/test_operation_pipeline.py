"""A host refresh end to end: API request → real Redis → real Celery worker → real libvirtd → WebSocket client."""

import asyncio
import json
from pathlib import Path

import pytest
import websockets
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.models import Host
from kvmweb.audit.models import AuditEvent
from kvmweb.operations.models import Operation
from tests.factories import make_user
from tests.stack import free_port, port_open, process_env, running, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A Celery worker and daphne, as separate processes on the test database and the real Redis."""
    logs: Path = tmp_path_factory.mktemp("stack")
    with django_db_blocker.unblock():
        env = process_env()
    port = free_port()
    worker_log, ws_log = logs / "worker.log", logs / "daphne.log"
    worker = ["celery", "-A", "kvmweb", "worker", "-Q", "default", "--pool", "solo", "-l", "info"]
    daphne = ["daphne", "-b", "127.0.0.1", "-p", str(port), "kvmweb.asgi:application"]
    with (
        running(worker, env=env, log=worker_log, ready=lambda: "ready." in worker_log.read_text(), what="worker"),
        running(daphne, env=env, log=ws_log, ready=lambda: port_open(port), what="daphne"),
    ):
        yield {"port": port}


async def collect(url: str, until, subscribed: asyncio.Event, timeout: float = 30) -> list[dict]:  # type: ignore[no-untyped-def]
    """Messages from /ws/events/ up to the one `until` accepts; `subscribed` is set once the server said hello."""
    seen: list[dict] = []
    async with websockets.connect(url, origin="http://localhost", open_timeout=10) as ws:
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await ws.recv())
                seen.append(message)
                if message.get("type") == "hello":
                    subscribed.set()
                elif until(message, seen):
                    return seen


def test_refresh_runs_on_a_worker_and_streams_to_the_browser(stack, transactional_db, libvirt_host):  # type: ignore[no-untyped-def]
    ada = make_user("ada", admin=True)
    token = Token.objects.create(user=ada).key
    host = Host.objects.create(name="lab", uri=libvirt_host)
    api = Client(HTTP_AUTHORIZATION=f"Token {token}")
    url = f"ws://127.0.0.1:{stack['port']}/ws/events/?token={token}"

    def done(message: dict, seen: list[dict]) -> bool:
        return any(
            m["type"] == "operation" and m["operation"]["status"] in ("succeeded", "failed") for m in seen
        ) and any(m["type"] == "host.state" and m["host"]["state"] == "connected" for m in seen)

    async def scenario() -> list[dict]:
        subscribed = asyncio.Event()
        listener = asyncio.create_task(collect(url, done, subscribed))
        await asyncio.wait_for(subscribed.wait(), 10)
        await asyncio.to_thread(_request_refresh, api, host)
        return await listener

    messages = asyncio.run(scenario())
    statuses = [m["operation"]["status"] for m in messages if m["type"] == "operation"]
    # "running" is pushed only when the refresh outlasts PUSH_INTERVAL; a quicker one goes straight to its end.
    assert statuses[0] == "pending" and set(statuses[1:-1]) <= {"running"} and statuses[-1] == "succeeded", statuses
    host.refresh_from_db()
    assert host.state == "connected" and host.libvirt_version and host.hypervisor == "QEMU"
    assert "qemu" in host.capabilities["virt_types"]
    op = Operation.objects.get(target_id=str(host.pk))
    assert op.status == "succeeded" and op.started is not None and op.finished is not None
    assert AuditEvent.objects.get(operation=op).outcome == "succeeded"


def _request_refresh(api: Client, host: Host) -> None:
    try:
        response = api.post(f"/api/v1/hosts/{host.pk}/actions/refresh/")
        assert response.status_code == 202, response.content
    finally:
        # This runs in a helper thread, which has its own connection: close it, or it outlives the test database.
        connection.close()


def test_unreachable_host_fails_the_operation_and_says_why(stack, transactional_db):  # type: ignore[no-untyped-def]
    ada = make_user("ada", admin=True)
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    response = api.post(
        "/api/v1/hosts/",
        {"name": "ghost", "uri": "qemu+unix:///system?socket=/nonexistent/libvirt-sock"},
        content_type="application/json",
    )
    op_id = response.json()["operation"]["id"]
    wait_until(lambda: Operation.objects.get(pk=op_id).status == "failed", timeout=30, what="the failed operation")
    host = Host.objects.get(name="ghost")
    assert host.state == "unreachable" and host.last_error
    assert Operation.objects.get(pk=op_id).error == host.last_error
