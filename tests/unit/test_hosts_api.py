"""The hosts API: exact shapes, validation that changes nothing, confirmation, conflicts, the token endpoint."""

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.models import Host
from kvmweb.audit.models import AuditEvent
from kvmweb.operations.models import Operation
from tests.factories import PASSWORD


@pytest.fixture
def api(ada, monkeypatch):  # type: ignore[no-untyped-def]
    from kvmweb.operations import services

    monkeypatch.setattr(services, "_enqueue", lambda op_id, kind, queue: None)
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")


def test_create_host_returns_host_and_queued_operation(api):  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/hosts/", {"name": "kvm2", "uri": "qemu:///system"}, content_type="application/json")
    assert response.status_code == 201
    body = response.json()
    host = Host.objects.get(name="kvm2")
    assert body["host"]["id"] == host.pk and body["host"]["state"] == "unreachable"
    assert body["operation"]["kind"] == "host.add"
    assert body["operation"]["status"] == "pending"
    assert body["operation"]["target"] == {"type": "host", "id": str(host.pk), "label": "kvm2"}
    assert AuditEvent.objects.filter(action="host.create", outcome="succeeded").exists()


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"name": "x", "uri": "xen:///system"}, "uri", "scheme"),
        ({"name": "x", "uri": "qemu:///system", "ssh_key_path": "relative/key"}, "ssh_key_path", "absolute"),
        ({"name": "x", "uri": "qemu:///system", "ssh_key_path": "/root/.ssh/id"}, "ssh_key_path", "qemu+ssh"),
        ({"name": "bad name!", "uri": "qemu:///system"}, "name", "letters"),
        ({"name": "lab", "uri": "qemu:///system"}, "name", "already exists"),
        ({"name": "x", "uri": "qemu:///system", "console_address": "10.0.0.5"}, "console_address", "local host"),
        ({"name": "x", "uri": "qemu+ssh://kvm2/system", "console_address": "0.0.0.0"}, "console_address", "every"),
        ({"name": "x", "uri": "qemu+ssh://kvm2/system", "console_address": "127.0.0.1"}, "console_address", "loopback"),
        ({"name": "x", "uri": "qemu+ssh://kvm2/system", "console_address": "a b"}, "console_address", "IP address"),
    ],
)
def test_bad_host_input_is_refused_with_field_messages_and_changes_nothing(api, host, payload, field, fragment):  # type: ignore[no-untyped-def]
    before = (Host.objects.count(), Operation.objects.count())
    response = api.post("/api/v1/hosts/", payload, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert fragment in error["details"][field]
    assert (Host.objects.count(), Operation.objects.count()) == before


def test_missing_field_uses_the_error_shape(api):  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/hosts/", {"name": "kvm3"}, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "The request is not valid: see details.",
            "details": {"uri": ["This field is required."]},
        }
    }


def test_malformed_json_uses_the_error_shape(api):  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/hosts/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_unknown_api_path_is_a_json_404(api):  # type: ignore[no-untyped-def]
    response = api.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_refresh_while_busy_is_409_naming_the_running_operation(api, host):  # type: ignore[no-untyped-def]
    first = api.post(f"/api/v1/hosts/{host.pk}/actions/refresh/").json()["operation"]
    response = api.post(f"/api/v1/hosts/{host.pk}/actions/refresh/")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict" and f"#{first['id']}" in error["message"]
    assert error["details"] == {"operation": first["id"]}


def test_unknown_host_action_is_refused(api, host):  # type: ignore[no-untyped-def]
    response = api.post(f"/api/v1/hosts/{host.pk}/actions/explode/")
    assert response.status_code == 400 and "refresh" in response.json()["error"]["message"]


def test_delete_needs_the_name_and_never_touches_the_hypervisor(api, host):  # type: ignore[no-untyped-def]
    response = api.delete(f"/api/v1/hosts/{host.pk}/", {"confirm_name": "wrong"}, content_type="application/json")
    assert response.status_code == 400 and Host.objects.filter(pk=host.pk).exists()
    response = api.delete(f"/api/v1/hosts/{host.pk}/", {"confirm_name": "lab"}, content_type="application/json")
    assert response.status_code == 204 and not Host.objects.filter(pk=host.pk).exists()
    assert AuditEvent.objects.filter(action="host.delete", outcome="succeeded", target_label="lab").exists()


def test_disabling_a_host_marks_it_disabled_and_queues_nothing(api, host):  # type: ignore[no-untyped-def]
    response = api.patch(f"/api/v1/hosts/{host.pk}/", {"enabled": False}, content_type="application/json")
    assert response.status_code == 200
    assert response.json()["host"]["state"] == "disabled" and response.json()["operation"] is None
    refused = api.post(f"/api/v1/hosts/{host.pk}/actions/refresh/")
    assert refused.status_code == 409 and "disabled" in refused.json()["error"]["message"]


def test_changing_the_uri_queues_a_reconnect(api, host):  # type: ignore[no-untyped-def]
    response = api.patch(
        f"/api/v1/hosts/{host.pk}/", {"uri": "qemu+tls://kvm9/system"}, content_type="application/json"
    )
    assert response.json()["operation"]["kind"] == "host.refresh"


def test_a_remote_hosts_console_address_is_saved_and_shown(api):  # type: ignore[no-untyped-def]
    payload = {"name": "kvm2", "uri": "qemu+ssh://admin@kvm2.example.com/system", "console_address": " 10.9.0.2 "}
    created = api.post("/api/v1/hosts/", payload, content_type="application/json").json()["host"]
    assert created["console_address"] == "10.9.0.2"
    assert Host.objects.get(name="kvm2").console_address == "10.9.0.2"


def test_changing_the_console_address_alone_queues_no_reconnect(api):  # type: ignore[no-untyped-def]
    host = Host.objects.create(name="kvm2", uri="qemu+ssh://kvm2/system", state=Host.State.CONNECTED)
    response = api.patch(
        f"/api/v1/hosts/{host.pk}/", {"console_address": "kvm2.mgmt.example.com"}, content_type="application/json"
    )
    assert response.status_code == 200 and response.json()["operation"] is None
    assert response.json()["host"]["console_address"] == "kvm2.mgmt.example.com"
    cleared = api.patch(f"/api/v1/hosts/{host.pk}/", {"console_address": ""}, content_type="application/json")
    assert cleared.json()["host"]["console_address"] == ""


def test_secrets_are_never_serialized(api, host):  # type: ignore[no-untyped-def]
    body = api.get(f"/api/v1/hosts/{host.pk}/").json()
    assert "password" not in str(body).lower()


def test_token_endpoint_issues_a_token_for_good_credentials_only(ada):  # type: ignore[no-untyped-def]
    client = Client()
    good = client.post(
        "/api/v1/auth/token/", {"username": "ada", "password": PASSWORD}, content_type="application/json"
    )
    assert good.status_code == 200 and good.json() == {"token": Token.objects.get(user=ada).key}
    bad = client.post("/api/v1/auth/token/", {"username": "ada", "password": "nope"}, content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid"
    assert AuditEvent.objects.filter(action="auth.token", outcome="denied").count() == 1


def test_schema_and_docs_are_served_without_a_cdn(ada):  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(ada)
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/").content.decode()
    assert "cdn" not in docs.lower() and "jsdelivr" not in docs.lower()
