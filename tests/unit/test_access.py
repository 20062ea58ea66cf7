"""Every endpoint, for every persona: ada administers, alice is a member of the host, bob is not, and anonymous."""

import uuid

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from kvmweb.audit.models import AuditEvent
from kvmweb.operations.models import Operation

# (method, path template, expected status per persona). 302 = sent to the login page.
UI = [
    ("get", "/", {"ada": 200, "alice": 200, "bob": 200, "anon": 302}),
    ("get", "/hosts/", {"ada": 200, "alice": 200, "bob": 200, "anon": 302}),
    ("get", "/hosts/{host}/", {"ada": 200, "alice": 200, "bob": 404, "anon": 302}),
    ("get", "/hosts/add/", {"ada": 200, "alice": 403, "bob": 403, "anon": 302}),
    ("get", "/hosts/{host}/edit/", {"ada": 200, "alice": 403, "bob": 404, "anon": 302}),
    ("get", "/hosts/{host}/delete/", {"ada": 200, "alice": 403, "bob": 404, "anon": 302}),
    ("post", "/hosts/{host}/refresh/", {"ada": 302, "alice": 403, "bob": 404, "anon": 302}),
    ("get", "/operations/", {"ada": 200, "alice": 200, "bob": 200, "anon": 302}),
    ("get", "/operations/{op}/", {"ada": 200, "alice": 200, "bob": 404, "anon": 302}),
    ("get", "/audit/", {"ada": 200, "alice": 403, "bob": 403, "anon": 302}),
    ("get", "/vms/", {"ada": 200, "alice": 200, "bob": 200, "anon": 302}),
    ("get", "/vms/{vm}/", {"ada": 200, "alice": 200, "bob": 404, "anon": 302}),
    ("post", "/vms/{vm}/actions/suspend/", {"ada": 302, "alice": 302, "bob": 404, "anon": 302}),
    ("get", "/networks/", {"ada": 200, "alice": 200, "bob": 200, "anon": 302}),
    ("get", "/networks/{network}/", {"ada": 200, "alice": 200, "bob": 404, "anon": 302}),
    ("get", "/storage/", {"ada": 200, "alice": 200, "bob": 200, "anon": 302}),
    ("get", "/storage/pools/{pool}/", {"ada": 200, "alice": 200, "bob": 404, "anon": 302}),
]
API = [
    ("get", "/api/v1/hosts/{host}/", {"ada": 200, "alice": 200, "bob": 404, "anon": 401}),
    ("patch", "/api/v1/hosts/{host}/", {"ada": 200, "alice": 403, "bob": 404, "anon": 401}),
    ("delete", "/api/v1/hosts/{host}/", {"ada": 204, "alice": 403, "bob": 404, "anon": 401}),
    ("post", "/api/v1/hosts/{host}/actions/refresh/", {"ada": 202, "alice": 403, "bob": 404, "anon": 401}),
    ("post", "/api/v1/hosts/", {"ada": 201, "alice": 403, "bob": 403, "anon": 401}),
    ("get", "/api/v1/hosts/", {"ada": 200, "alice": 200, "bob": 200, "anon": 401}),
    ("get", "/api/v1/operations/", {"ada": 200, "alice": 200, "bob": 200, "anon": 401}),
    ("get", "/api/v1/operations/{op}/", {"ada": 200, "alice": 200, "bob": 404, "anon": 401}),
    ("get", "/api/v1/vms/", {"ada": 200, "alice": 200, "bob": 200, "anon": 401}),
    ("get", "/api/v1/vms/{vm}/", {"ada": 200, "alice": 200, "bob": 404, "anon": 401}),
    ("post", "/api/v1/vms/{vm}/actions/suspend/", {"ada": 202, "alice": 202, "bob": 404, "anon": 401}),
]
PERSONAS = ["ada", "alice", "bob", "anon"]
BODIES = {
    ("patch", "/api/v1/hosts/{host}/"): {"name": "lab-renamed"},
    ("delete", "/api/v1/hosts/{host}/"): {"confirm_name": "lab"},
    ("post", "/api/v1/hosts/"): {"name": "kvm2", "uri": "qemu+ssh://root@kvm2.example/system"},
}


@pytest.fixture
def world(ada, alice, bob, host, monkeypatch):  # type: ignore[no-untyped-def]
    from kvmweb.operations import services

    monkeypatch.setattr(services, "_enqueue", lambda op_id, queue: None)
    op = Operation.objects.create(
        kind="host.refresh",
        target_type="host",
        target_id=str(host.pk),
        target_label=host.name,
        requested_by=alice,
        status="succeeded",
        deadline="2030-01-01T00:00:00Z",
    )
    from networks.models import Network
    from storage.models import StoragePool
    from tests.factories import make_vm

    vm = make_vm(host, "alices-vm", owner=alice)
    network = Network.objects.create(host=host, uuid=uuid.uuid4(), name="default", active=True, forward_mode="nat")
    pool = StoragePool.objects.create(host=host, uuid=uuid.uuid4(), name="images", type="dir", state="running")
    return {
        "ada": ada,
        "alice": alice,
        "bob": bob,
        "anon": None,
        "host": host,
        "op": op,
        "vm": vm.uuid,
        "network": network.pk,
        "pool": pool.pk,
    }


def ids(world):  # type: ignore[no-untyped-def]
    return {
        "host": world["host"].pk,
        "op": world["op"].pk,
        "vm": world["vm"],
        "network": world["network"],
        "pool": world["pool"],
    }


def client_for(world, persona: str, *, api: bool) -> Client:  # type: ignore[no-untyped-def]
    user = world[persona]
    if user is None:
        return Client()
    if api:
        return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("method", "path", "expected"), UI, ids=[f"{m} {p}" for m, p, _ in UI])
def test_ui_access(world, persona, method, path, expected):  # type: ignore[no-untyped-def]
    response = getattr(client_for(world, persona, api=False), method)(path.format(**ids(world)))
    assert response.status_code == expected[persona]
    if expected[persona] == 302 and persona == "anon":
        assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("method", "path", "expected"), API, ids=[f"{m} {p}" for m, p, _ in API])
def test_api_access(world, persona, method, path, expected):  # type: ignore[no-untyped-def]
    body = BODIES.get((method, path))
    response = getattr(client_for(world, persona, api=True), method)(
        path.format(**ids(world)), data=body, content_type="application/json"
    )
    assert response.status_code == expected[persona], response.content
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "details"}


def test_refused_state_change_is_audited_as_denied(world):  # type: ignore[no-untyped-def]
    client_for(world, "alice", api=True).post(f"/api/v1/hosts/{world['host'].pk}/actions/refresh/")
    event = AuditEvent.objects.get(outcome="denied")
    assert (event.actor_name, event.action, event.target_label) == ("alice", "host.refresh", "lab")


def test_state_changes_need_csrf_in_the_browser(world):  # type: ignore[no-untyped-def]
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["ada"])
    assert client.post(f"/hosts/{world['host'].pk}/refresh/").status_code == 403
    assert not Operation.objects.filter(kind="host.refresh", status="pending").exists()
    api = Client(enforce_csrf_checks=True)
    api.force_login(world["ada"])
    assert api.post(f"/api/v1/hosts/{world['host'].pk}/actions/refresh/").status_code == 403


def test_state_changes_refuse_get(world):  # type: ignore[no-untyped-def]
    client = client_for(world, "ada", api=False)
    assert client.get(f"/hosts/{world['host'].pk}/refresh/").status_code == 405
