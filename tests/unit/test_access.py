"""Every endpoint, for every persona: ada administers, alice owns the VM and is a member of the host,
carol is a member of the host who owns nothing, bob is not a member, and anonymous.

The project's convention (kvmweb/access.py): what a user may not see is missing (404), what they may
see but not change is refused (403); anonymous pages send to the login page (302), the API says 401.
The VM rows are checked against the URLconf, so a new VM endpoint without a row fails here. The
world is built once for the module, in a transaction rolled back at its end; each test runs in a
savepoint inside it (plain `db`), so a request's writes never reach the next test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.authtoken.models import Token

from kvmweb.audit.models import AuditEvent
from kvmweb.operations.models import Operation
from vms.actions import ACTIONS, BULK_ACTIONS
from vms.api.snapshots import ITEM_ACTIONS
from vms.models import VirtualMachine

PERSONAS = ["ada", "alice", "carol", "bob", "anon"]
DENIED_VM = {"carol": 404, "bob": 404}  # VMs are seen by their owner and administrators only


def ui(ok: int, **other: int) -> dict[str, int]:
    return {"ada": ok, "alice": ok, "carol": ok, "bob": ok, "anon": 302, **other}


def api(ok: int, **other: int) -> dict[str, int]:
    return {"ada": ok, "alice": ok, "carol": ok, "bob": ok, "anon": 401, **other}


def _admin_only(action: str) -> dict[str, int]:
    """Actions that need more than owning the VM (define-xml: raw XML is root on the host)."""
    return {"alice": 403} if ACTIONS[action].requires else {}


# (method, path template, expected status per persona). The path's {placeholders} come from the world.
UI = [
    ("get", "/", ui(200)),
    ("get", "/hosts/", ui(200)),
    ("get", "/hosts/{host}/", ui(200, bob=404)),
    ("get", "/hosts/add/", ui(403, ada=200)),
    ("get", "/hosts/{host}/edit/", ui(403, ada=200, bob=404)),
    ("get", "/hosts/{host}/delete/", ui(403, ada=200, bob=404)),
    ("post", "/hosts/{host}/refresh/", ui(403, ada=302, bob=404)),
    ("get", "/operations/", ui(200)),
    ("get", "/operations/{op}/", ui(200, carol=404, bob=404)),
    ("get", "/audit/", ui(403, ada=200)),
    ("get", "/networks/", ui(200)),
    ("get", "/networks/{network}/", ui(200, bob=404)),
    ("get", "/storage/", ui(200)),
    ("get", "/storage/pools/{pool}/", ui(200, bob=404)),
]
API = [
    ("get", "/api/v1/hosts/{host}/", api(200, bob=404)),
    ("patch", "/api/v1/hosts/{host}/", api(403, ada=200, bob=404)),
    ("delete", "/api/v1/hosts/{host}/", api(403, ada=204, bob=404)),
    ("post", "/api/v1/hosts/{host}/actions/refresh/", api(403, ada=202, bob=404)),
    ("post", "/api/v1/hosts/", api(403, ada=201)),
    ("get", "/api/v1/hosts/", api(200)),
    ("get", "/api/v1/operations/", api(200)),
    ("get", "/api/v1/operations/{op}/", api(200, carol=404, bob=404)),
]
# Every VM endpoint. "ok" is any answer that got past the access check: a page, a redirect back with
# the service's message, or the API's 202/400/409 (a state or parameter refusal is not an access one).
OK = -1
VM_UI = [
    ("get", "/vms/", ui(200)),
    ("get", "/vms/new/", ui(200)),
    ("get", "/vms/templates/", ui(200)),
    *[("post", f"/vms/actions/{name}/", ui(302)) for name in BULK_ACTIONS],
    ("get", "/vms/{vm}/", ui(200, **DENIED_VM)),
    *[("post", f"/vms/{{vm}}/actions/{name}/", ui(302, **DENIED_VM, **_admin_only(name))) for name in ACTIONS],
    ("get", "/vms/{vm}/xml/", ui(200, alice=403, **DENIED_VM)),
    ("post", "/vms/{vm}/xml/", ui(200, alice=403, **DENIED_VM)),
    ("post", "/vms/{vm}/xml/review/", ui(400, alice=403, **DENIED_VM)),
    ("get", "/vms/{vm}/log/", ui(200, **DENIED_VM)),
    ("post", "/vms/{vm}/template/", ui(302, **DENIED_VM)),
    ("post", "/vms/{vm}/owner/", ui(302, alice=403, **DENIED_VM)),
    ("get", "/vms/{vm}/console/", ui(200, **DENIED_VM)),
    ("post", "/vms/{vm}/console/token/", ui(OK, **DENIED_VM)),
    ("post", "/vms/{vm}/console/shares/", ui(302, **DENIED_VM)),
    ("post", "/vms/{vm}/console/shares/dave/revoke/", ui(302, **DENIED_VM)),
    ("post", "/vms/{vm}/console/shares/teams/lab/revoke/", ui(302, **DENIED_VM)),
]
VM_API = [
    ("get", "/api/v1/vms/", api(200)),
    ("post", "/api/v1/vms/", api(400)),
    ("get", "/api/v1/vms/templates/", api(200)),
    *[("post", f"/api/v1/vms/actions/{name}/", api(202)) for name in BULK_ACTIONS],
    ("get", "/api/v1/vms/{vm}/", api(200, **DENIED_VM)),
    *[("post", f"/api/v1/vms/{{vm}}/actions/{name}/", api(OK, **DENIED_VM, **_admin_only(name))) for name in ACTIONS],
    ("get", "/api/v1/vms/{vm}/xml/", api(200, **DENIED_VM)),
    ("post", "/api/v1/vms/{vm}/template/", api(409, **DENIED_VM)),  # running: refused by state, not access
    ("post", "/api/v1/vms/{vm}/owner/", api(200, alice=403, **DENIED_VM)),
    ("get", "/api/v1/vms/{vm}/snapshots/", api(200, **DENIED_VM)),
    ("post", "/api/v1/vms/{vm}/snapshots/", api(OK, **DENIED_VM)),
    ("get", "/api/v1/vms/{vm}/snapshots/before/", api(200, **DENIED_VM)),
    *[("post", f"/api/v1/vms/{{vm}}/snapshots/before/actions/{name}/", api(OK, **DENIED_VM)) for name in ITEM_ACTIONS],
    ("get", "/api/v1/vms/{vm}/console/shares/", api(200, **DENIED_VM)),
    ("post", "/api/v1/vms/{vm}/console/shares/", api(201, **DENIED_VM)),
    ("delete", "/api/v1/vms/{vm}/console/shares/dave/", api(204, **DENIED_VM)),
    ("delete", "/api/v1/vms/{vm}/console/shares/teams/lab/", api(204, **DENIED_VM)),
    ("post", "/api/v1/vms/{vm}/console/", api(OK, **DENIED_VM)),
]
BODIES = {
    ("patch", "/api/v1/hosts/{host}/"): {"name": "lab-renamed"},
    ("delete", "/api/v1/hosts/{host}/"): {"confirm_name": "lab"},
    ("post", "/api/v1/hosts/"): {"name": "kvm2", "uri": "qemu+ssh://root@kvm2.example/system"},
    ("post", "/vms/{vm}/owner/"): {"owner": "carol"},
    ("post", "/api/v1/vms/{vm}/owner/"): {"owner": "carol"},
    ("post", "/vms/{vm}/template/"): {"template": "on"},
    ("post", "/api/v1/vms/{vm}/template/"): {"template": True},
    ("post", "/vms/{vm}/console/shares/"): {"user": "erin"},
    ("post", "/api/v1/vms/{vm}/console/shares/"): {"user": "erin"},
    ("post", "/vms/{vm}/xml/review/"): {"xml": "<domain", "original": ""},
}
VM_UUID = "0f0e0d0c-0b0a-4908-8706-050403020100"
_ALLOWED = {"ada", "alice"}


def _body(method: str, path: str) -> dict[str, Any] | None:
    if path.startswith(("/vms/actions/", "/api/v1/vms/actions/")):
        return {"vms": [VM_UUID]}
    return BODIES.get((method, path))


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The personas, their sessions and tokens, and one of everything, made once for the module."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            data = _build_world()
        except BaseException:
            outer.__exit__(None, None, None)
            raise
    yield data
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)


def _build_world() -> dict[str, Any]:
    from consoles.models import ConsoleShare
    from networks.models import Network
    from storage.models import StoragePool
    from teams.models import Team, TeamMembership
    from tests.factories import make_host, make_user, make_vm
    from vms.snapshot_models import Snapshot

    users = {name: make_user(name, admin=name == "ada") for name in ("ada", "alice", "carol", "bob", "dave", "erin")}
    host = make_host("lab", members=(users["alice"], users["carol"]))
    op = Operation.objects.create(
        kind="host.refresh",
        target_type="host",
        target_id=str(host.pk),
        target_label=host.name,
        requested_by=users["alice"],
        status="succeeded",
        deadline="2030-01-01T00:00:00Z",
    )
    vm = make_vm(host, "alices-vm", owner=users["alice"], uuid=uuid.UUID(VM_UUID))
    Snapshot.objects.create(vm=vm, name="before", created=timezone.now())
    ConsoleShare.objects.create(vm=vm, user=users["dave"], created_by=users["alice"])
    lab = Team.objects.create(name="Lab", slug="lab")  # dave is in it: carol and bob are not
    TeamMembership.objects.create(team=lab, user=users["dave"])
    ConsoleShare.objects.create(vm=vm, team=lab, created_by=users["alice"])
    network = Network.objects.create(host=host, uuid=uuid.uuid4(), name="default", active=True, forward_mode="nat")
    pool = StoragePool.objects.create(host=host, uuid=uuid.uuid4(), name="images", type="dir", state="running")
    return {
        "ids": {"host": host.pk, "op": op.pk, "vm": vm.uuid, "network": network.pk, "pool": pool.pk},
        "sessions": {name: _session_key(users[name]) for name in PERSONAS if name != "anon"},
        "tokens": {name: Token.objects.create(user=users[name]).key for name in PERSONAS if name != "anon"},
        "host": host,
        "vm": vm,
    }


def _session_key(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def client_for(world: dict[str, Any], persona: str, *, api: bool) -> Client:
    if persona == "anon":
        return Client()
    if api:
        return Client(HTTP_AUTHORIZATION=f"Token {world['tokens'][persona]}")
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = world["sessions"][persona]
    return client


@pytest.fixture
def queued(monkeypatch):  # type: ignore[no-untyped-def]
    # Nothing reaches a broker: on_commit never fires inside the module's transaction, and this makes sure.
    from kvmweb.operations import services

    monkeypatch.setattr(services, "_enqueue", lambda op_id, kind, queue: None)


def request(world: dict[str, Any], persona: str, method: str, path: str, *, api: bool) -> Any:
    body = _body(method, path)
    client = client_for(world, persona, api=api)
    url = path.format(**world["ids"])
    if api:
        return getattr(client, method)(url, data=body, content_type="application/json")
    return getattr(client, method)(url, data=body) if method == "post" else client.get(url)


def _ids(rows: list[tuple[str, str, dict[str, int]]]) -> list[str]:
    return [f"{m} {p}" for m, p, _ in rows]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("method", "path", "expected"), UI + VM_UI, ids=_ids(UI + VM_UI))
def test_ui_access(db, world, queued, persona, method, path, expected):  # type: ignore[no-untyped-def]
    response = request(world, persona, method, path, api=False)
    _check(world, persona, path, expected[persona], response)
    if persona == "anon":
        assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("method", "path", "expected"), API + VM_API, ids=_ids(API + VM_API))
def test_api_access(db, world, queued, persona, method, path, expected):  # type: ignore[no-untyped-def]
    response = request(world, persona, method, path, api=True)
    _check(world, persona, path, expected[persona], response)
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "details"}


def _check(world: dict[str, Any], persona: str, path: str, expected: int, response: Any) -> None:
    if expected == OK:
        assert response.status_code not in (401, 403, 404), response.content
        assert not AuditEvent.objects.filter(outcome="denied").exists()
    else:
        assert response.status_code == expected, response.content
    if path.startswith(("/vms/", "/api/v1/vms/")) and persona not in _ALLOWED:
        _assert_vm_untouched(world)


def _assert_vm_untouched(world: dict[str, Any]) -> None:
    """A refused persona changed nothing: no operation on the VM, same owner, not a template."""
    vm = world["vm"]
    assert not Operation.objects.filter(target_type="vm", target_id=str(vm.uuid)).exists()
    row = VirtualMachine.objects.get(pk=vm.pk)
    assert (row.owner_id, row.is_template, row.version) == (vm.owner_id, vm.is_template, vm.version)


@pytest.mark.parametrize("persona", ["ada", "alice", "carol", "bob"])
@pytest.mark.parametrize("path", ["/vms/", "/api/v1/vms/"])
def test_vm_lists_show_the_vm_to_its_owner_and_administrators_only(db, world, persona, path):  # type: ignore[no-untyped-def]
    response = client_for(world, persona, api=path.startswith("/api/")).get(path)
    assert (b"alices-vm" in response.content) == (persona in _ALLOWED)


def _routes(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def _as_route(path: str) -> str:
    """The URLconf route a row's path resolves to, e.g. "vms/<uuid:vm_uuid>/"."""
    match = get_resolver().resolve(path.format(host=1, op=1, vm=VM_UUID, network=1, pool=1))
    return match.route


def test_every_vm_endpoint_has_a_row() -> None:
    """Each VM route, each API method it answers and each action it takes is in the tables above."""
    routes = {route: view for route, view in _routes(get_resolver()) if route.startswith(("vms/", "api/v1/vms/"))}
    ui_rows = {(_as_route(p), m) for m, p, _ in VM_UI}
    api_rows = {(_as_route(p), m) for m, p, _ in VM_API}
    assert {route for route, _ in ui_rows | api_rows} == set(routes)
    for route, view in routes.items():
        if route.startswith("api/"):
            methods = set(view.cls.http_method_names) - {"options", "head"}
            assert {m for r, m in api_rows if r == route} == methods, route
    assert {p for _, p, _ in VM_UI if "/{vm}/actions/" in p} == {f"/vms/{{vm}}/actions/{a}/" for a in ACTIONS}
    assert {p for _, p, _ in VM_API if "/{vm}/actions/" in p} == {f"/api/v1/vms/{{vm}}/actions/{a}/" for a in ACTIONS}


def test_refused_state_change_is_audited_as_denied(db, world):  # type: ignore[no-untyped-def]
    client_for(world, "alice", api=True).post(f"/api/v1/hosts/{world['host'].pk}/actions/refresh/")
    event = AuditEvent.objects.get(outcome="denied")
    assert (event.actor_name, event.action, event.target_label) == ("alice", "host.refresh", "lab")


def test_state_changes_need_csrf_in_the_browser(db, world):  # type: ignore[no-untyped-def]
    host = world["host"].pk
    client = Client(enforce_csrf_checks=True)
    client.cookies[settings.SESSION_COOKIE_NAME] = world["sessions"]["ada"]
    assert client.post(f"/hosts/{host}/refresh/").status_code == 403
    assert client.post(f"/vms/{VM_UUID}/actions/suspend/").status_code == 403
    assert not Operation.objects.filter(status="pending").exists()
    api = Client(enforce_csrf_checks=True)
    api.cookies[settings.SESSION_COOKIE_NAME] = world["sessions"]["ada"]
    assert api.post(f"/api/v1/hosts/{host}/actions/refresh/").status_code == 403


def test_state_changes_refuse_get(db, world):  # type: ignore[no-untyped-def]
    client = client_for(world, "ada", api=False)
    assert client.get(f"/hosts/{world['host'].pk}/refresh/").status_code == 405
    assert client.get(f"/vms/{VM_UUID}/owner/").status_code == 405
