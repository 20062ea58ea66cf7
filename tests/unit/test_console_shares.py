"""View-only console sharing, who is watching, and ending sessions.

alice owns the VM "demo", ada administers, bob has no access, carol and dave are people alice shares
the console with (they watch; they don't see the VM page). Closing sessions is checked on the real
Redis channel the console proxies listen to.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from consoles import shares
from consoles.messages import session_payload
from consoles.models import ConsoleSession, ConsoleShare
from consoles.services import console_open, console_vm
from consoles.sessions import close_channel, redis_client, sessions_close
from consoles.tokens import verify
from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.errors import Conflict, Forbidden, Invalid, NotVisible
from kvmweb.realtime import publish as publish_module
from teams.models import Team, TeamMembership
from tests.factories import PASSWORD, make_host, make_user, make_vm
from vms.catalog import vm_reassign

DEADLINE = 5.0
SHARE_REFUSED = "Only the VM's owner, an instructor of the owner's team, or an administrator can share its console."


@pytest.fixture
def carol(db):  # type: ignore[no-untyped-def]
    return make_user("carol")


@pytest.fixture
def dave(db):  # type: ignore[no-untyped-def]
    return make_user("dave")


@pytest.fixture
def vm(host, alice):  # type: ignore[no-untyped-def]
    return make_vm(host, "demo", owner=alice)


@pytest.fixture(autouse=True)
def _own_channel(settings):  # type: ignore[no-untyped-def]
    # Every test listens on a channel of its own: runs in parallel never hear each other.
    settings.KVMWEB_CHANNEL_PREFIX = f"test-shares-{uuid.uuid4().hex}"


@pytest.fixture
def closes(_own_channel) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """Subscribed to the close channel the proxies listen to; call it to read the next message."""
    pubsub = redis_client().pubsub(ignore_subscribe_messages=False)
    pubsub.subscribe(close_channel())
    confirmed = pubsub.get_message(timeout=DEADLINE)
    assert confirmed is not None and confirmed["type"] == "subscribe"

    def next_message() -> dict[str, Any]:
        message = pubsub.get_message(timeout=DEADLINE)
        assert message is not None, "no close message within the deadline"
        return json.loads(message["data"])

    yield next_message
    pubsub.close()


@pytest.fixture
def pushed(monkeypatch) -> list[tuple[list[str], dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """What would reach the browsers' groups once committed (the channel layer itself is tested elsewhere)."""
    sent: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(publish_module, "_send", lambda groups, payload, *_: sent.append((groups, payload)))
    return sent


def as_actor(user: Any) -> Actor:
    return Actor(user=user, ip="192.0.2.7")


def api(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


def page(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


def session(vm: Any, user: Any, *, view_only: bool = True, kind: str = "vnc", ended: bool = False) -> ConsoleSession:
    row = ConsoleSession.objects.create(vm=vm, user=user, kind=kind, view_only=view_only, client_ip="192.0.2.50")
    if ended:
        row.ended = timezone.now()
        row.bytes_to_client = 3 << 20
        row.bytes_from_client = 2048
        row.end_reason = "The browser closed the connection."
        row.save()
    return row


def shares_url(vm: Any, username: str | None = None) -> str:
    base = f"/api/v1/vms/{vm.uuid}/console/shares/"
    return f"{base}{username}/" if username else base


def events(action: str) -> list[tuple[str, str, str, str]]:
    return [
        (e.actor_name, e.outcome, e.target_label, e.message)
        for e in AuditEvent.objects.filter(action=action).order_by("id")
    ]


def sentinel(closes: Any) -> None:
    """Nothing was asked to close: the next message on the channel is the one we send now."""
    sessions_close([-1], reason="sentinel")
    assert closes() == {"sessions": [-1], "reason": "sentinel"}


# --- sharing through the API ---------------------------------------------------------------------------------------


def test_owner_shares_and_the_list_shows_it(vm, alice, carol, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    client = api(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(shares_url(vm), {"user": "carol"}, content_type="application/json")
    assert response.status_code == 201
    share = ConsoleShare.objects.get(vm=vm, user=carol)
    created = share.created.isoformat().replace("+00:00", "Z")
    row = {"user": "carol", "team": None, "members": None, "created_by": "alice", "created": created}
    assert response.json() == row
    assert client.get(shares_url(vm)).json() == [row]
    # carol may now open the console, view-only, and still not see the VM itself
    assert list(access.console_vms(carol)) == [vm]
    assert not access.console_may_type(carol, vm)
    assert list(access.visible_vms(carol)) == []
    assert events("console.share") == [("alice", "succeeded", "demo", "Shared the console view-only with carol.")]


def test_owner_revokes_and_the_share_is_gone(vm, alice, carol, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, user=carol, created_by=alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(alice).delete(shares_url(vm, "carol"))
    assert response.status_code == 204
    assert response.content == b""
    assert not ConsoleShare.objects.filter(vm=vm).exists()
    assert list(access.console_vms(carol)) == []
    assert events("console.unshare") == [("alice", "succeeded", "demo", "Stopped sharing the console with carol.")]


def test_admin_shares_and_revokes_anyones_vm(vm, ada, carol, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    client = api(ada)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(shares_url(vm), {"user": "carol"}, content_type="application/json").status_code == 201
        assert ConsoleShare.objects.get(vm=vm, user=carol).created_by == ada
        assert client.delete(shares_url(vm, "carol")).status_code == 204
    assert not ConsoleShare.objects.exists()
    assert [e[:2] for e in events("console.share") + events("console.unshare")] == [
        ("ada", "succeeded"),
        ("ada", "succeeded"),
    ]


def test_other_user_gets_404_and_it_is_audited(vm, bob, carol):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, user=carol)
    client = api(bob)
    not_found = {"error": {"code": "not_found", "message": "No such VM.", "details": {}}}
    for response in (
        client.get(shares_url(vm)),
        client.post(shares_url(vm), {"user": "carol"}, content_type="application/json"),
        client.delete(shares_url(vm, "carol")),
    ):
        assert response.status_code == 404
        assert response.json() == not_found
    assert ConsoleShare.objects.filter(vm=vm, user=carol).exists()
    assert [(e.action, e.actor_name, e.outcome) for e in AuditEvent.objects.order_by("id")] == [
        ("console.shares", "bob", "denied"),
        ("console.share", "bob", "denied"),
        ("console.unshare", "bob", "denied"),
    ]


def test_a_vm_that_does_not_exist_is_404(alice):  # type: ignore[no-untyped-def]
    response = api(alice).get(f"/api/v1/vms/{uuid.uuid4()}/console/shares/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_shared_user_cannot_share_on_or_revoke(vm, alice, carol, dave):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, user=carol, created_by=alice)
    client = api(carol)
    refused = {
        "error": {
            "code": "permission_denied",
            "message": SHARE_REFUSED,
            "details": {},
        }
    }
    for response in (
        client.get(shares_url(vm)),
        client.post(shares_url(vm), {"user": "dave"}, content_type="application/json"),
        client.delete(shares_url(vm, "carol")),
    ):
        assert response.status_code == 403
        assert response.json() == refused
    assert list(ConsoleShare.objects.values_list("user__username", flat=True)) == ["carol"]
    assert events("console.share") == [("carol", "denied", "demo", refused["error"]["message"])]


def test_anonymous_gets_401_from_the_api_and_the_login_page_from_pages(vm, carol):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, user=carol)
    client = Client()
    response = client.get(shares_url(vm))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert client.delete(shares_url(vm, "carol")).status_code == 401
    response = client.post(f"/vms/{vm.uuid}/console/shares/", {"user": "bob"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.get("/consoles/").status_code == 302
    assert ConsoleShare.objects.count() == 1


@pytest.mark.parametrize(
    ("username", "status", "code", "message"),
    [
        ("", 400, "invalid", "Name the user to share the console with."),
        ("nobody", 400, "invalid", "There is no active user called 'nobody'."),
        ("gone", 400, "invalid", "There is no active user called 'gone'."),
        ("alice", 400, "invalid", "alice owns demo: they already have full access to its console."),
        ("ada", 400, "invalid", "ada is an administrator: they already have full access to every console."),
        ("carol", 409, "conflict", "demo's console is already shared with carol."),
    ],
)
def test_refusals_are_plain(vm, alice, ada, carol, username, status, code, message):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, user=carol, created_by=alice)
    gone = make_user("gone")
    gone.is_active = False
    gone.save()
    response = api(alice).post(shares_url(vm), {"user": username}, content_type="application/json")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"] == message
    assert ConsoleShare.objects.count() == 1
    assert events("console.share") == [("alice", "failed", "demo", message)]


def test_revoking_a_share_that_does_not_exist_is_404(vm, alice):  # type: ignore[no-untyped-def]
    response = api(alice).delete(shares_url(vm, "carol"))
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "demo's console is not shared with carol.", "details": {}}
    }


# --- closing live sessions -----------------------------------------------------------------------------------------


def test_revoke_closes_exactly_that_users_live_sessions_on_that_vm(  # type: ignore[no-untyped-def]
    vm, host, alice, carol, dave, closes, django_capture_on_commit_callbacks
):
    other = make_vm(host, "other", owner=alice)
    for target in (vm, other):
        ConsoleShare.objects.create(vm=target, user=carol, created_by=alice)
    ConsoleShare.objects.create(vm=vm, user=dave, created_by=alice)
    screen = session(vm, carol)
    serial = session(vm, carol, kind="serial")
    session(vm, carol, ended=True)  # already over
    session(other, carol)  # still shared with her
    session(vm, dave)  # someone else's
    session(vm, alice, view_only=False)  # the owner's

    with django_capture_on_commit_callbacks(execute=True):
        assert api(alice).delete(shares_url(vm, "carol")).status_code == 204

    assert closes() == {
        "sessions": sorted([screen.pk, serial.pk]),
        "reason": "demo's console is no longer shared with you.",
    }
    sentinel(closes)


def test_nothing_is_closed_before_the_revoke_commits(vm, alice, carol, closes, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, user=carol, created_by=alice)
    watching = session(vm, carol)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        shares.share_revoke(actor=as_actor(alice), vm=vm, username="carol")
    sentinel(closes)  # not yet: the transaction has not committed
    for callback in callbacks:
        callback()
    assert closes() == {"sessions": [watching.pk], "reason": "demo's console is no longer shared with you."}


def test_admin_ends_one_session(vm, ada, alice, carol, closes, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, user=carol, created_by=alice)
    target = session(vm, carol)
    session(vm, alice, view_only=False)
    client = page(ada)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/consoles/sessions/{target.pk}/end/")
    assert response.status_code == 302 and response["Location"] == "/consoles/"
    assert closes() == {"sessions": [target.pk], "reason": "An administrator ended this console session."}
    sentinel(closes)
    assert events("console.end") == [
        ("ada", "succeeded", "demo", f"Ended carol's view-only Graphical (VNC) console session #{target.pk}.")
    ]


def test_only_administrators_end_sessions(vm, alice, carol, closes):  # type: ignore[no-untyped-def]
    target = session(vm, carol)
    response = page(alice).post(f"/consoles/sessions/{target.pk}/end/")
    assert response.status_code == 403
    assert page(alice).get("/consoles/").status_code == 403
    with pytest.raises(Forbidden):
        shares.session_end(actor=as_actor(alice), session=target)
    sentinel(closes)
    assert [(e.actor_name, e.outcome) for e in AuditEvent.objects.filter(action="console.end")] == [
        ("alice", "denied"),
        ("alice", "denied"),
    ]


def test_ending_a_session_that_already_ended_is_refused(vm, ada, carol, closes):  # type: ignore[no-untyped-def]
    over = session(vm, carol, ended=True)
    with pytest.raises(Conflict, match=f"Console session #{over.pk} has already ended."):
        shares.session_end(actor=as_actor(ada), session=over)
    with pytest.raises(NotVisible):
        shares.session_get(actor=as_actor(ada), session_id=over.pk + 1000)
    sentinel(closes)


def test_reassigning_the_owner_closes_the_previous_owners_sessions(  # type: ignore[no-untyped-def]
    vm, host, ada, alice, bob, carol, closes, django_capture_on_commit_callbacks
):
    other = make_vm(host, "other", owner=alice)
    ConsoleShare.objects.create(vm=vm, user=carol, created_by=alice)
    screen = session(vm, alice, view_only=False)
    serial = session(vm, alice, view_only=False, kind="serial")
    session(other, alice, view_only=False)  # still hers
    session(vm, carol)  # the share stays: carol keeps watching
    session(vm, ada, view_only=False)

    with django_capture_on_commit_callbacks(execute=True):
        vm_reassign(actor=as_actor(ada), vm=vm, owner=bob)

    assert closes() == {"sessions": sorted([screen.pk, serial.pk]), "reason": "demo now belongs to bob."}
    sentinel(closes)


def test_reassigning_away_from_an_administrator_closes_nothing(
    host, ada, bob, closes, django_capture_on_commit_callbacks
):  # type: ignore[no-untyped-def]
    vm = make_vm(host, "theirs", owner=ada)
    session(vm, ada, view_only=False)
    with django_capture_on_commit_callbacks(execute=True):
        vm_reassign(actor=as_actor(ada), vm=vm, owner=bob)
    sentinel(closes)  # an administrator still has full control of every console


def test_a_previous_owner_the_console_is_shared_with_keeps_only_view_only_sessions(  # type: ignore[no-untyped-def]
    vm, ada, alice, bob, closes, django_capture_on_commit_callbacks
):
    ConsoleShare.objects.create(vm=vm, user=alice, created_by=ada)  # shared before alice owned it
    typing = session(vm, alice, view_only=False)
    session(vm, alice, view_only=True)
    with django_capture_on_commit_callbacks(execute=True):
        vm_reassign(actor=as_actor(ada), vm=vm, owner=bob)
    assert closes() == {"sessions": [typing.pk], "reason": "demo now belongs to bob."}
    sentinel(closes)


# --- realtime ------------------------------------------------------------------------------------------------------


def test_sharing_tells_the_vms_audience_and_the_shared_user(
    vm, alice, carol, pushed, django_capture_on_commit_callbacks
):  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        shares.share_add(actor=as_actor(alice), vm=vm, username="carol")
        shares.share_revoke(actor=as_actor(alice), vm=vm, username="carol")
    audience = sorted(["admins", f"vm.{vm.uuid}", f"user.{alice.pk}", f"user.{carol.pk}"])
    assert pushed == [
        (audience, {"type": "console.share", "vm": str(vm.uuid), "user": "carol", "shared": True, "v": 1}),
        (audience, {"type": "console.share", "vm": str(vm.uuid), "user": "carol", "shared": False, "v": 1}),
    ]


def test_session_payload_is_small_and_json(vm, carol):  # type: ignore[no-untyped-def]
    live = session(vm, carol, kind="serial")
    assert json.loads(json.dumps(session_payload(live))) == {
        "type": "console.session",
        "vm": str(vm.uuid),
        "session": live.pk,
        "kind": "serial",
        "user": "carol",
        "view_only": True,
        "live": True,
        "started": live.started.isoformat(),
        "ended": None,
        "end_reason": "",
    }
    over = session(vm, carol, ended=True)
    payload = session_payload(over)
    assert (payload["live"], payload["ended"], payload["end_reason"]) == (
        False,
        over.ended.isoformat(),
        "The browser closed the connection.",
    )


# --- pages ---------------------------------------------------------------------------------------------------------


def test_page_forms_add_and_revoke_with_csrf(vm, alice, carol, closes, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    client = Client(enforce_csrf_checks=True)
    client.login(username="alice", password=PASSWORD)
    add = f"/vms/{vm.uuid}/console/shares/"
    assert client.post(add, {"user": "carol"}).status_code == 403  # no CSRF token
    client.get("/vms/")  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = client.post(add, {"user": "carol", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == f"/vms/{vm.uuid}/#console"
    assert ConsoleShare.objects.filter(vm=vm, user=carol).exists()

    watching = session(vm, carol)
    revoke = f"/vms/{vm.uuid}/console/shares/carol/revoke/"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(revoke, {"csrfmiddlewaretoken": token, "next": f"/vms/{vm.uuid}/#console"})
    assert response.status_code == 302
    assert closes() == {"sessions": [watching.pk], "reason": "demo's console is no longer shared with you."}
    messages = [str(m) for m in response.wsgi_request._messages]  # type: ignore[attr-defined]
    assert messages == [
        "carol can now watch demo's console (view-only).",
        "carol can no longer watch demo's console; any view of theirs was closed.",
    ]
    # revoked already (another tab): said plainly, not a 404 page
    response = client.post(revoke, {"csrfmiddlewaretoken": token}, follow=True)
    assert "demo&#x27;s console is not shared with carol." in response.content.decode()


def test_page_refusals(vm, alice, bob, carol):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, user=carol, created_by=alice)
    assert page(bob).post(f"/vms/{vm.uuid}/console/shares/", {"user": "dave"}).status_code == 404
    response = page(carol).post(f"/vms/{vm.uuid}/console/shares/", {"user": "bob"})
    assert response.status_code == 403
    assert SHARE_REFUSED.replace("'", "&#x27;") in response.content.decode()
    response = page(alice).post(f"/vms/{vm.uuid}/console/shares/", {"user": "carol"}, follow=True)
    assert "demo&#x27;s console is already shared with carol." in response.content.decode()


def render_panel(user: Any, vm: Any) -> str:
    from django.template.loader import render_to_string
    from django.test import RequestFactory

    request = RequestFactory().get(f"/vms/{vm.uuid}/")
    request.user = user
    panel = shares.share_panel(user, vm)
    return render_to_string("consoles/share_panel.html", {"vm": vm, "panel": panel}, request=request)


def test_share_panel_renders_shares_candidates_and_who_is_watching(vm, ada, alice, bob, carol, dave):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, user=carol, created_by=alice)
    session(vm, carol, kind="vnc")
    session(vm, alice, view_only=False, kind="serial")
    session(vm, dave, ended=True)
    html = render_panel(alice, vm)
    assert f'action="/vms/{vm.uuid}/console/shares/"' in html
    assert f'action="/vms/{vm.uuid}/console/shares/carol/revoke/"' in html
    assert "Stop sharing demo's console with carol?" in html
    # the datalist offers people who could be added: not the owner, administrators, or carol again
    datalist = html.split('<datalist id="share-user-choices">')[1].split("</datalist>")[0]
    assert datalist == '<option value="bob"></option><option value="dave"></option>'
    watching = html.split('data-live-region="console-watching"')[1]
    rows = watching.split("<tr data-console-session=")[1:]
    assert len(rows) == 2  # dave's ended session is not live
    assert "carol" in rows[0] and "View only" in rows[0] and "Graphical (VNC)" in rows[0]
    assert "alice" in rows[1] and "(you)" in rows[1] and "Full control" in rows[1] and "Serial" in rows[1]
    assert "/end/" not in html  # ending sessions is for administrators
    assert "/consoles/sessions/" in render_panel(ada, vm)
    assert render_panel(bob, vm).strip() == ""


def test_sessions_page_lists_live_and_recent_sessions(vm, ada, alice, carol):  # type: ignore[no-untyped-def]
    live = session(vm, carol)
    over = session(vm, alice, view_only=False, kind="serial", ended=True)
    response = page(ada).get("/consoles/")
    assert response.status_code == 200
    html = response.content.decode()
    open_now, ended = html.split('id="ended-title"')
    assert f'data-console-session="{live.pk}"' in open_now
    assert f'action="/consoles/sessions/{live.pk}/end/"' in open_now
    assert f'data-console-session="{over.pk}"' in ended and "3.0\xa0MB · 2.0\xa0KB" in ended
    assert "The browser closed the connection." in ended
    assert 'href="/consoles/"' in html  # the sidebar link, for administrators


def test_shared_with_me_lists_consoles_shared_with_the_user(vm, host, alice, carol):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, user=carol, created_by=alice)
    make_vm(host, "unshared", owner=alice)
    html = page(carol).get("/vms/").content.decode()
    card = html.split('id="shared-title"')[1].split("</section>")[0]
    assert f'href="{reverse("consoles:page", args=[vm.uuid])}"' in card
    assert "shared by alice" in card and "unshared" not in card
    assert 'href="/consoles/"' not in html  # no sidebar link for non-administrators
    assert 'id="shared-title"' not in page(alice).get("/vms/").content.decode()


def test_selectors_work_without_a_logged_in_user(vm):  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import AnonymousUser

    assert shares.shared_with(AnonymousUser()) == []
    assert not access.console_may_share(AnonymousUser(), vm)
    with pytest.raises(Forbidden):
        access.require_console_share(AnonymousUser(), vm)
    with pytest.raises(Invalid):
        shares.share_add(actor=as_actor(vm.owner), vm=vm, username="  ")


def test_a_host_without_members_changes_nothing(db):  # type: ignore[no-untyped-def]
    # Sharing needs no host membership: the person watching never sees the host or the VM page.
    owner, watcher = make_user("olga"), make_user("wes")
    vm = make_vm(make_host("bare"), "lonely", owner=owner)
    shares.share_add(actor=as_actor(owner), vm=vm, username="wes")
    assert list(access.console_vms(watcher)) == [vm]
    assert list(access.visible_hosts(watcher)) == []


# --- teams: sharing with a team, instructors, and closing what a team change takes away ----------------------------
# The team "Lab 1" has alice (the owner) and carol as members and ivy as instructor; dave and bob are
# not in it. A team share reaches its members; an instructor watches and shares the members' VMs.

SCREEN_SOCKET = "/run/kvmweb-lab/vnc/demo.sock"
SCREEN_XML = f"""<domain type='qemu'><name>demo</name><devices>
<graphics type='vnc' socket='{SCREEN_SOCKET}'><listen type='socket' socket='{SCREEN_SOCKET}'/></graphics>
</devices></domain>"""


@pytest.fixture
def ivy(db):  # type: ignore[no-untyped-def]
    return make_user("ivy")


@pytest.fixture
def lab(alice, carol, ivy):  # type: ignore[no-untyped-def]
    team = Team.objects.create(name="Lab 1", slug="lab-1")
    TeamMembership.objects.create(team=team, user=alice)
    TeamMembership.objects.create(team=team, user=carol)
    TeamMembership.objects.create(team=team, user=ivy, role=TeamMembership.Role.INSTRUCTOR)
    return team


def team_url(vm: Any, slug: str) -> str:
    return f"/api/v1/vms/{vm.uuid}/console/shares/teams/{slug}/"


def test_owner_shares_with_a_team_and_its_members_watch_view_only(  # type: ignore[no-untyped-def]
    alice, bob, carol, lab, django_capture_on_commit_callbacks
):
    screen = make_vm(make_host("here", uri="qemu:///system"), "demo", owner=alice, xml=SCREEN_XML)
    client = api(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(shares_url(screen), {"team": "lab-1"}, content_type="application/json")
    assert response.status_code == 201
    created = ConsoleShare.objects.get(vm=screen, team=lab).created.isoformat().replace("+00:00", "Z")
    row = {"user": None, "team": "lab-1", "members": 3, "created_by": "alice", "created": created}
    assert response.json() == row
    assert client.get(shares_url(screen)).json() == [row]
    assert events("console.share") == [("alice", "succeeded", "demo", "Shared the console view-only with team Lab 1.")]
    ticket = console_open(actor=as_actor(carol), vm=console_vm(actor=as_actor(carol), uuid=screen.uuid))
    assert ticket.view_only is True and verify(ticket.token).user == carol.pk
    assert page(carol).post(f"/vms/{screen.uuid}/console/token/").json()["view_only"] is True
    assert page(bob).post(f"/vms/{screen.uuid}/console/token/").status_code == 404
    assert [s.vm for s in shares.shared_with(carol)] == [screen]
    assert list(access.visible_vms(carol)) == []


def test_sharing_with_a_team_tells_its_members(vm, alice, carol, ivy, lab, pushed, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        shares.share_add_team(actor=as_actor(alice), vm=vm, slug="lab-1")
    groups, payload = pushed[-1]
    assert {f"user.{carol.pk}", f"user.{ivy.pk}"} <= set(groups)
    assert payload == {
        "type": "console.share",
        "vm": str(vm.uuid),
        "user": None,
        "team": "lab-1",
        "shared": True,
        "v": 1,
    }


@pytest.mark.parametrize(
    ("slug", "status", "message"),
    [
        ("", 400, "Name the user to share the console with."),
        ("nope", 400, "There is no team called 'nope' that you can share with."),
        ("other", 400, "There is no team called 'other' that you can share with."),  # alice is not in it
        ("lab-1", 409, "demo's console is already shared with team Lab 1."),
    ],
)
def test_team_share_refusals(vm, alice, lab, slug, status, message):  # type: ignore[no-untyped-def]
    Team.objects.create(name="Other", slug="other")
    ConsoleShare.objects.create(vm=vm, team=lab, created_by=alice)
    response = api(alice).post(shares_url(vm), {"team": slug}, content_type="application/json")
    assert (response.status_code, response.json()["error"]["message"]) == (status, message)
    assert ConsoleShare.objects.count() == 1


def test_administrator_shares_with_any_team(vm, ada, lab):  # type: ignore[no-untyped-def]
    other = Team.objects.create(name="Other", slug="other")
    assert api(ada).post(shares_url(vm), {"team": "other"}, content_type="application/json").status_code == 201
    assert ConsoleShare.objects.get(vm=vm).team == other


def test_instructor_watches_and_shares_a_members_vm(vm, alice, bob, ivy, lab):  # type: ignore[no-untyped-def]
    assert list(access.console_vms(ivy)) == [vm]
    assert access.console_may_share(ivy, vm) and not access.console_may_type(ivy, vm)
    client = api(ivy)
    assert client.post(shares_url(vm), {"user": "bob"}, content_type="application/json").status_code == 201
    assert client.post(shares_url(vm), {"team": "lab-1"}, content_type="application/json").status_code == 201
    assert client.delete(team_url(vm, "lab-1")).status_code == 204
    assert [(e[0], e[1]) for e in events("console.share")] == [("ivy", "succeeded"), ("ivy", "succeeded")]


def test_plain_member_may_watch_a_team_share_but_not_share(vm, alice, carol, lab):  # type: ignore[no-untyped-def]
    ConsoleShare.objects.create(vm=vm, team=lab, created_by=alice)
    client = api(carol)
    for response in (
        client.post(shares_url(vm), {"user": "dave"}, content_type="application/json"),
        client.post(shares_url(vm), {"team": "lab-1"}, content_type="application/json"),
        client.delete(team_url(vm, "lab-1")),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["message"] == SHARE_REFUSED
    assert not access.console_may_share(carol, vm)


def test_instructor_of_another_team_gets_404(vm, alice, dave, lab):  # type: ignore[no-untyped-def]
    other = Team.objects.create(name="Other", slug="other")
    TeamMembership.objects.create(team=other, user=dave, role=TeamMembership.Role.INSTRUCTOR)
    assert list(access.console_vms(dave)) == []
    assert api(dave).post(shares_url(vm), {"user": "bob"}, content_type="application/json").status_code == 404


def test_revoking_a_team_share_closes_exactly_the_members_who_lost_access(  # type: ignore[no-untyped-def]
    vm, host, alice, bob, carol, dave, ivy, lab, closes, django_capture_on_commit_callbacks
):
    TeamMembership.objects.create(team=lab, user=dave)
    ConsoleShare.objects.create(vm=vm, team=lab, created_by=alice)
    ConsoleShare.objects.create(vm=vm, user=dave, created_by=alice)  # dave still has his own share
    other = make_vm(host, "other", owner=bob)
    ConsoleShare.objects.create(vm=other, team=lab, created_by=bob)
    carols = session(vm, carol)
    session(vm, dave)  # kept: shared with him by name
    session(vm, ivy)  # kept: instructs alice's team
    session(vm, alice, view_only=False)  # the owner's
    session(other, carol)  # another VM, still shared with the team
    session(vm, bob)  # never had access here; not a member, so not this revoke's business
    with django_capture_on_commit_callbacks(execute=True):
        assert api(alice).delete(team_url(vm, "lab-1")).status_code == 204
    assert closes() == {"sessions": [carols.pk], "reason": "demo's console is no longer shared with team Lab 1."}
    sentinel(closes)
    assert events("console.unshare") == [("alice", "succeeded", "demo", "Stopped sharing the console with team Lab 1.")]


def test_revoking_a_team_share_that_does_not_exist_is_404(vm, alice, lab):  # type: ignore[no-untyped-def]
    response = api(alice).delete(team_url(vm, "lab-1"))
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "demo's console is not shared with team lab-1."


def test_removing_a_member_closes_their_team_sessions_and_the_instructors_view_of_their_vms(  # type: ignore[no-untyped-def]
    vm, host, ada, alice, bob, carol, ivy, lab, closes, django_capture_on_commit_callbacks
):
    from teams.services import LOST_REASON, member_remove

    ConsoleShare.objects.create(vm=vm, team=lab, created_by=alice)
    carols_vm = make_vm(host, "carols", owner=carol)
    ConsoleShare.objects.create(vm=vm, user=bob, created_by=alice)
    on_demo = session(vm, carol)
    ivy_on_carols = session(carols_vm, ivy)
    session(vm, ivy)  # alice is still in the team
    session(carols_vm, carol, view_only=False)  # her own VM
    session(vm, bob)  # shared by name
    with django_capture_on_commit_callbacks(execute=True):
        member_remove(actor=as_actor(ada), team=lab, username="carol")
    assert closes() == {"sessions": sorted([on_demo.pk, ivy_on_carols.pk]), "reason": LOST_REASON}
    sentinel(closes)


def test_deleting_a_team_closes_its_members_views(
    vm, ada, alice, carol, lab, closes, django_capture_on_commit_callbacks
):  # type: ignore[no-untyped-def]
    from teams.services import LOST_REASON, team_delete

    ConsoleShare.objects.create(vm=vm, team=lab, created_by=alice)
    watching = session(vm, carol)
    with django_capture_on_commit_callbacks(execute=True):
        team_delete(actor=as_actor(ada), team=lab)
    assert not ConsoleShare.objects.exists()
    assert closes() == {"sessions": [watching.pk], "reason": LOST_REASON}
    sentinel(closes)


def test_share_panel_renders_team_shares_and_the_team_choice(vm, alice, carol, ivy, lab):  # type: ignore[no-untyped-def]
    Team.objects.create(name="Other", slug="other")
    ConsoleShare.objects.create(vm=vm, team=lab, created_by=ivy)
    html = render_panel(alice, vm)
    row = html.split('data-share-team="lab-1"')[1].split("</li>")[0]
    assert "Lab 1" in row and "3 members" in row and "by ivy" in row
    assert f'action="/vms/{vm.uuid}/console/shares/teams/lab-1/revoke/"' in row
    assert '<select class="form-select" id="share-team"' not in html  # alice's one team is shared already
    ConsoleShare.objects.filter(team=lab).delete()
    html = render_panel(alice, vm)
    assert '<option value="lab-1">Lab 1</option>' in html and "other" not in html


def test_page_forms_share_with_a_team_and_revoke(vm, alice, carol, lab, closes, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    client = page(alice)
    response = client.post(f"/vms/{vm.uuid}/console/shares/", {"team": "lab-1"})
    assert response.status_code == 302 and response["Location"] == f"/vms/{vm.uuid}/#console"
    assert ConsoleShare.objects.filter(vm=vm, team=lab).exists()
    watching = session(vm, carol)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/vms/{vm.uuid}/console/shares/teams/lab-1/revoke/")
    assert response.status_code == 302
    assert closes() == {"sessions": [watching.pk], "reason": "demo's console is no longer shared with team Lab 1."}


def test_a_share_names_a_user_or_a_team_never_both(vm, carol, lab):  # type: ignore[no-untyped-def]
    from django.db import IntegrityError, transaction

    for fields in ({"user": carol, "team": lab}, {}):
        with pytest.raises(IntegrityError), transaction.atomic():
            ConsoleShare.objects.create(vm=vm, **fields)


def test_an_instructor_made_a_member_loses_the_view_of_members_vms(  # type: ignore[no-untyped-def]
    vm, ada, ivy, lab, closes, django_capture_on_commit_callbacks
):
    from teams.services import LOST_REASON, member_set_role

    watching = session(vm, ivy)
    with django_capture_on_commit_callbacks(execute=True):
        member_set_role(actor=as_actor(ada), team=lab, username="ivy", role="member")
    assert closes() == {"sessions": [watching.pk], "reason": LOST_REASON}
    assert list(access.console_vms(ivy)) == []
