"""Console tokens from the page and the API, and the console page itself.

alice owns the VM and gets a full console; bob has it shared with him (view-only, forced); carol has
no access and gets 404; anonymous visitors are sent to sign in (page) or get 401 (API). Each token is
opened with consoles.tokens.verify, as the proxy does, to check what it grants.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from consoles.models import ConsoleShare
from consoles.tokens import ConsoleGrant, TokenRefused, verify
from kvmweb.audit.models import AuditEvent
from tests.factories import make_host, make_user, make_vm

SOCKET = "/run/kvmweb-lab/vnc/web1.sock"
SOCKET_XML = f"""<domain type='qemu'><name>web1</name><devices>
<graphics type='vnc' socket='{SOCKET}' sharePolicy='force-shared'><listen type='socket' socket='{SOCKET}'/></graphics>
</devices></domain>"""
# What a signed token looks like (django.core.signing: payload:timestamp:signature).
SIGNED = re.compile(r"[A-Za-z0-9_\-.]{20,}:[A-Za-z0-9_\-]{4,}:[A-Za-z0-9_\-]{20,}")


@pytest.fixture
def vm(alice):  # type: ignore[no-untyped-def]
    host = make_host("here", uri="qemu:///system", members=(alice,))
    return make_vm(host, "web1", owner=alice, xml=SOCKET_XML)


@pytest.fixture
def carol(db):  # type: ignore[no-untyped-def]
    return make_user("carol")


@pytest.fixture
def shared_with_bob(vm, alice, bob):  # type: ignore[no-untyped-def]
    return ConsoleShare.objects.create(vm=vm, user=bob, created_by=alice)


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api_client(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


def page_token(client: Client, vm: Any, **data: str) -> Any:
    return client.post(f"/vms/{vm.uuid}/console/token/", data)


def api_token(client: Client, vm: Any, body: dict[str, Any] | None = None) -> Any:
    return client.post(f"/api/v1/vms/{vm.uuid}/console/", json.dumps(body or {}), content_type="application/json")


def grant_of(body: dict[str, Any]) -> ConsoleGrant:
    grant = verify(body["token"])
    assert body["websocket_url"] == f"/console/websockify?token={body['token']}"
    assert body["expires"] == grant.expires
    return grant


# ------------------------------------------------------------------ the page's token endpoint


def test_owner_gets_a_full_console_token(vm, alice):  # type: ignore[no-untyped-def]
    response = page_token(signed_in(alice), vm)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "websocket_url", "expires", "view_only"}
    assert body["view_only"] is False
    grant = grant_of(body)
    assert (grant.user, grant.vm, grant.kind, grant.target, grant.view_only) == (
        alice.pk,
        str(vm.uuid),
        "vnc",
        {"socket": SOCKET},
        False,
    )
    assert response["Cache-Control"].startswith("max-age=0")


def test_owner_may_ask_for_a_view_only_token(vm, alice):  # type: ignore[no-untyped-def]
    body = page_token(signed_in(alice), vm, view_only="1").json()
    assert body["view_only"] is True
    assert grant_of(body).view_only is True


def test_each_request_gets_a_new_single_use_token(vm, alice):  # type: ignore[no-untyped-def]
    client = signed_in(alice)
    first, second = (grant_of(page_token(client, vm).json()) for _ in range(2))
    assert first.nonce != second.nonce


def test_shared_user_gets_a_view_only_token_even_when_asking_for_more(vm, bob, shared_with_bob):  # type: ignore[no-untyped-def]
    body = page_token(signed_in(bob), vm).json()
    assert body["view_only"] is True
    grant = grant_of(body)
    assert (grant.user, grant.vm, grant.view_only) == (bob.pk, str(vm.uuid), True)


def test_user_without_access_gets_404_and_the_refusal_is_audited(vm, bob):  # type: ignore[no-untyped-def]
    response = page_token(signed_in(bob), vm)
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such VM.", "details": {}}}
    event = AuditEvent.objects.get(action="console.open")
    assert (event.actor_name, event.target_id, event.outcome) == ("bob", str(vm.uuid), AuditEvent.Outcome.DENIED)


def test_a_revoked_share_gives_404(vm, bob, shared_with_bob):  # type: ignore[no-untyped-def]
    client = signed_in(bob)
    assert page_token(client, vm).status_code == 200
    shared_with_bob.delete()
    assert page_token(client, vm).status_code == 404


def test_anonymous_visitor_is_sent_to_sign_in(vm):  # type: ignore[no-untyped-def]
    response = page_token(Client(), vm)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_token_endpoint_takes_post_only(vm, alice):  # type: ignore[no-untyped-def]
    assert signed_in(alice).get(f"/vms/{vm.uuid}/console/token/").status_code == 405


def test_token_endpoint_needs_the_csrf_token(vm, alice):  # type: ignore[no-untyped-def]
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert page_token(client, vm).status_code == 403
    client.get(f"/vms/{vm.uuid}/console/")  # the page sets the csrftoken cookie
    csrf = client.cookies["csrftoken"].value
    response = client.post(f"/vms/{vm.uuid}/console/token/", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200


def test_shut_off_vm_gives_409_with_a_plain_message_and_its_state(vm, alice):  # type: ignore[no-untyped-def]
    vm.state = "shutoff"
    vm.save(update_fields=["state"])
    response = page_token(signed_in(alice), vm)
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "conflict",
            "message": "web1 is shut off: start it to see its screen.",
            "details": {"state": "shutoff"},
        }
    }


# ------------------------------------------------------------------ the API


def test_api_owner_gets_a_token(vm, alice):  # type: ignore[no-untyped-def]
    response = api_token(api_client(alice), vm)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "websocket_url", "expires"}
    grant = grant_of(body)
    assert (grant.user, grant.vm, grant.target, grant.view_only) == (alice.pk, str(vm.uuid), {"socket": SOCKET}, False)


def test_api_view_only_request(vm, alice):  # type: ignore[no-untyped-def]
    body = api_token(api_client(alice), vm, {"view_only": True}).json()
    assert grant_of(body).view_only is True


def test_api_shared_user_is_forced_to_view_only(vm, bob, shared_with_bob):  # type: ignore[no-untyped-def]
    body = api_token(api_client(bob), vm, {"view_only": False}).json()
    grant = grant_of(body)
    assert (grant.user, grant.view_only) == (bob.pk, True)


def test_api_user_without_access_gets_404(vm, carol):  # type: ignore[no-untyped-def]
    response = api_token(api_client(carol), vm)
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such VM.", "details": {}}}


def test_api_anonymous_gets_401(vm):  # type: ignore[no-untyped-def]
    response = api_token(Client(), vm)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_api_refuses_a_view_only_that_is_not_a_boolean(vm, alice):  # type: ignore[no-untyped-def]
    response = api_token(api_client(alice), vm, {"view_only": "perhaps"})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "view_only is true or false.",
            "details": {"view_only": "view_only is true or false."},
        }
    }


def test_api_shut_off_vm_gives_409(vm, alice):  # type: ignore[no-untyped-def]
    vm.state = "shutoff"
    vm.save(update_fields=["state"])
    response = api_token(api_client(alice), vm)
    assert response.status_code == 409
    assert response.json() == {
        "error": {"code": "conflict", "message": "web1 is shut off: start it to see its screen.", "details": {}}
    }


# ------------------------------------------------------------------ the console page


def no_token_in(html: str) -> None:
    assert "websockify" not in html
    for candidate in SIGNED.findall(html):
        with pytest.raises(TokenRefused):
            verify(candidate)


def test_console_page_renders_for_the_owner_without_a_token(vm, alice):  # type: ignore[no-untyped-def]
    response = signed_in(alice).get(f"/vms/{vm.uuid}/console/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-token-url="/vms/{vm.uuid}/console/token/"' in html
    assert 'data-view-only="0"' in html
    assert "data-console-cad" in html
    assert f'action="/vms/{vm.uuid}/actions/start/"' in html
    assert f'href="/vms/{vm.uuid}/#console"' in html
    assert "js/console.js" in html
    no_token_in(html)


def test_console_page_renders_view_only_for_a_shared_user(vm, bob, shared_with_bob):  # type: ignore[no-untyped-def]
    response = signed_in(bob).get(f"/vms/{vm.uuid}/console/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-view-only="1"' in html
    assert "View only" in html
    assert "data-console-paste" not in html  # no typing for watchers
    assert "/actions/start/" not in html  # nor starting it
    assert f'href="/vms/{vm.uuid}/' not in html  # the VM page is not theirs to see
    no_token_in(html)


def test_console_page_is_404_for_others_and_sends_anonymous_to_sign_in(vm, carol):  # type: ignore[no-untyped-def]
    assert signed_in(carol).get(f"/vms/{vm.uuid}/console/").status_code == 404
    response = Client().get(f"/vms/{vm.uuid}/console/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_vm_page_has_the_console_tab_and_thumbnail(vm, alice):  # type: ignore[no-untyped-def]
    response = signed_in(alice).get(f"/vms/{vm.uuid}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-hash="console"' in html
    assert "data-console-thumb" in html
    assert 'data-embedded data-connect="visible"' in html
    assert f'href="/vms/{vm.uuid}/console/"' in html
    no_token_in(html)
