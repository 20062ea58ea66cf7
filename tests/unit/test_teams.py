"""Teams: administrators create, rename and delete them and manage members, in pages and the API.

ada administers, alice is a member of "Lab 1", ivy its instructor, bob is in no team. Members read
their team; every change is an administrator's, goes through POST (with CSRF in the browser) and is
audited, refusals included.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from kvmweb.audit.models import AuditEvent
from teams.models import Team, TeamMembership
from tests.factories import make_user


@pytest.fixture
def ivy(db):  # type: ignore[no-untyped-def]
    return make_user("ivy")


@pytest.fixture
def lab(alice, ivy):  # type: ignore[no-untyped-def]
    team = Team.objects.create(name="Lab 1", slug="lab-1", description="Monday class")
    TeamMembership.objects.create(team=team, user=alice)
    TeamMembership.objects.create(team=team, user=ivy, role=TeamMembership.Role.INSTRUCTOR)
    return team


def page(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def api(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


def audit() -> list[tuple[str, str, str, str, str]]:
    return [
        (e.action, e.actor_name, e.outcome, e.target_label, e.message)
        for e in AuditEvent.objects.filter(target_type="team").order_by("id")
    ]


def members(team: Team) -> list[tuple[str, str]]:
    return list(team.memberships.order_by("user__username").values_list("user__username", "role"))


def iso(dt: Any) -> str:
    return dt.isoformat().replace("+00:00", "Z")


# --- pages ---------------------------------------------------------------------------------------------------------


def test_admin_creates_a_team_and_manages_its_members(ada, alice, bob, lab):  # type: ignore[no-untyped-def]
    client = page(ada)
    response = client.post("/teams/add/", {"name": "Networking 101", "description": "Tuesdays"})
    assert response.status_code == 302 and response["Location"] == "/teams/networking-101/"
    team = Team.objects.get(slug="networking-101")
    assert (team.name, team.description) == ("Networking 101", "Tuesdays")
    assert client.post("/teams/networking-101/members/", {"user": "bob", "role": "instructor"}).status_code == 302
    assert client.post("/teams/networking-101/members/", {"user": "alice"}).status_code == 302
    assert client.post("/teams/networking-101/members/bob/role/", {"role": "member"}).status_code == 302
    response = client.post("/teams/networking-101/members/alice/remove/")
    assert response["Location"] == "/teams/networking-101/#members"
    assert members(team) == [("bob", "member")]
    assert audit() == [
        ("team.create", "ada", "succeeded", "Networking 101", "Created team Networking 101."),
        ("team.member.add", "ada", "succeeded", "Networking 101", "Added bob to Networking 101 as instructor."),
        ("team.member.add", "ada", "succeeded", "Networking 101", "Added alice to Networking 101 as member."),
        ("team.member.role", "ada", "succeeded", "Networking 101", "Made bob member of Networking 101."),
        ("team.member.remove", "ada", "succeeded", "Networking 101", "Removed alice from Networking 101."),
    ]


def test_admin_renames_and_deletes_a_team(ada, lab):  # type: ignore[no-untyped-def]
    client = page(ada)
    response = client.post("/teams/lab-1/edit/", {"name": "Lab One", "description": "moved"})
    assert response["Location"] == "/teams/lab-one/"
    lab.refresh_from_db()
    assert (lab.name, lab.slug, lab.description) == ("Lab One", "lab-one", "moved")
    assert client.post("/teams/lab-one/delete/")["Location"] == "/teams/"
    assert not Team.objects.exists() and not TeamMembership.objects.exists()
    assert [e[0::4] for e in audit()] == [
        ("team.update", "Renamed team Lab 1 to Lab One."),
        ("team.delete", "Deleted team Lab One (2 members)."),
    ]


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/teams/add/", {"name": "Mine"}),
        ("/teams/lab-1/edit/", {"name": "Mine"}),
        ("/teams/lab-1/delete/", {}),
        ("/teams/lab-1/members/", {"user": "bob"}),
        ("/teams/lab-1/members/alice/role/", {"role": "instructor"}),
        ("/teams/lab-1/members/alice/remove/", {}),
    ],
)
def test_only_administrators_change_teams(alice, bob, ivy, lab, path, data):  # type: ignore[no-untyped-def]
    assert page(alice).post(path, data).status_code == 403  # a member
    assert page(ivy).post(path, data).status_code == 403  # an instructor too
    outsider = 403 if path == "/teams/add/" else 404  # bob doesn't learn the team exists
    assert page(bob).post(path, data).status_code == outsider
    response = Client().post(path, data)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert list(Team.objects.values_list("name", flat=True)) == ["Lab 1"]
    assert members(lab) == [("alice", "member"), ("ivy", "instructor")]
    assert [(e.actor_name, e.outcome) for e in AuditEvent.objects.order_by("id")] == [
        ("alice", "denied"),
        ("ivy", "denied"),
        ("bob", "denied"),
    ]


def test_team_pages_show_members_their_team_and_administrators_every_team(ada, alice, bob, lab):  # type: ignore[no-untyped-def]
    Team.objects.create(name="Other", slug="other")
    html = page(ada).get("/teams/").content.decode()
    assert 'href="/teams/lab-1/"' in html and 'href="/teams/other/"' in html and 'action="/teams/add/"' in html
    assert 'href="/teams/"' in html  # the sidebar link, for administrators
    html = page(alice).get("/teams/").content.decode()
    assert 'href="/teams/lab-1/"' in html and "/teams/other/" not in html and "/teams/add/" not in html
    assert 'href="/teams/"' not in html.split('id="kv-nav"')[1].split("</nav>")[0]
    assert "/teams/lab-1/" not in page(bob).get("/teams/").content.decode()
    detail = page(alice).get("/teams/lab-1/").content.decode()
    assert 'data-member="alice"' in detail and 'data-member="ivy"' in detail and "Instructor" in detail
    assert "/members/alice/remove/" not in detail  # members only look
    assert "/members/alice/remove/" in page(ada).get("/teams/lab-1/").content.decode()
    assert page(bob).get("/teams/lab-1/").status_code == 404
    assert page(alice).get("/teams/other/").status_code == 404
    assert Client().get("/teams/").status_code == 302


def test_team_changes_need_post_and_csrf(ada, lab):  # type: ignore[no-untyped-def]
    assert page(ada).get("/teams/lab-1/delete/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(ada)
    assert strict.post("/teams/lab-1/delete/").status_code == 403
    assert strict.post("/teams/add/", {"name": "X"}).status_code == 403
    assert Team.objects.count() == 1


@pytest.mark.parametrize(
    ("path", "data", "message"),
    [
        ("/teams/add/", {"name": "lab 1"}, "There is already a team called lab 1."),
        ("/teams/add/", {"name": "  "}, "Name the team."),
        ("/teams/add/", {"name": "Add"}, "&#x27;Add&#x27; is reserved: pick another name."),
        ("/teams/lab-1/members/", {"user": "nobody"}, "There is no active user called &#x27;nobody&#x27;."),
        ("/teams/lab-1/members/", {"user": "alice"}, "alice is already in Lab 1."),
        ("/teams/lab-1/members/alice/role/", {"role": "boss"}, "No such role: &#x27;boss&#x27;."),
        ("/teams/lab-1/members/bob/remove/", {}, "bob is not in Lab 1."),
    ],
)
def test_refusals_are_plain_and_audited(ada, bob, lab, path, data, message):  # type: ignore[no-untyped-def]
    response = page(ada).post(path, data, HTTP_REFERER="/teams/lab-1/", follow=True)
    assert message in response.content.decode()
    assert [e.outcome for e in AuditEvent.objects.all()] == ["failed"]
    assert Team.objects.count() == 1 and members(lab) == [("alice", "member"), ("ivy", "instructor")]


# --- API -----------------------------------------------------------------------------------------------------------


def test_api_lists_teams_by_who_asks(ada, alice, bob, lab):  # type: ignore[no-untyped-def]
    other = Team.objects.create(name="Other", slug="other")
    row = {"name": "Lab 1", "slug": "lab-1", "description": "Monday class", "created": iso(lab.created), "members": 2}
    other_row = {"name": "Other", "slug": "other", "description": "", "created": iso(other.created), "members": 0}
    assert api(ada).get("/api/v1/teams/").json() == [row, other_row]
    assert api(alice).get("/api/v1/teams/").json() == [row]
    assert api(bob).get("/api/v1/teams/").json() == []
    assert Client().get("/api/v1/teams/").status_code == 401


def test_api_team_detail_for_members_and_administrators(ada, alice, bob, ivy, lab):  # type: ignore[no-untyped-def]
    alice_in, ivy_in = (lab.memberships.get(user=u) for u in (alice, ivy))
    body = {
        "name": "Lab 1",
        "slug": "lab-1",
        "description": "Monday class",
        "created": iso(lab.created),
        "members": 2,
        "memberships": [
            {"user": "ivy", "role": "instructor", "created": iso(ivy_in.created)},
            {"user": "alice", "role": "member", "created": iso(alice_in.created)},
        ],
    }
    member, outsider = api(alice), api(bob)
    assert member.get("/api/v1/teams/lab-1/").json() == body
    assert api(ada).get("/api/v1/teams/lab-1/").json() == body
    assert member.get("/api/v1/teams/lab-1/members/").json() == body["memberships"]
    response = outsider.get("/api/v1/teams/lab-1/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such team.", "details": {}}}
    assert outsider.get("/api/v1/teams/lab-1/members/").status_code == 404
    assert Client().get("/api/v1/teams/lab-1/").status_code == 401


def test_api_admin_creates_changes_and_deletes(ada, alice, bob, lab):  # type: ignore[no-untyped-def]
    client = api(ada)
    response = client.post("/api/v1/teams/", {"name": "Ops", "description": "on call"}, content_type="application/json")
    assert response.status_code == 201
    ops = Team.objects.get(slug="ops")
    assert response.json() == {
        "name": "Ops",
        "slug": "ops",
        "description": "on call",
        "created": iso(ops.created),
        "members": 0,
        "memberships": [],
    }
    response = client.post(
        "/api/v1/teams/ops/members/", {"user": "bob", "role": "instructor"}, content_type="application/json"
    )
    assert response.status_code == 201
    assert response.json()["user"] == "bob" and response.json()["role"] == "instructor"
    response = client.patch("/api/v1/teams/ops/members/bob/", {"role": "member"}, content_type="application/json")
    assert response.json()["role"] == "member"
    response = client.patch("/api/v1/teams/ops/", {"name": "Operations"}, content_type="application/json")
    assert (response.json()["slug"], response.json()["description"], response.json()["members"]) == (
        "operations",
        "on call",
        1,
    )
    assert client.delete("/api/v1/teams/operations/members/bob/").status_code == 204
    assert client.delete("/api/v1/teams/operations/").status_code == 204
    assert list(Team.objects.values_list("slug", flat=True)) == ["lab-1"]
    assert [e[0] for e in audit()] == [
        "team.create",
        "team.member.add",
        "team.member.role",
        "team.update",
        "team.member.remove",
        "team.delete",
    ]


def test_api_members_and_outsiders_may_not_change(alice, bob, lab):  # type: ignore[no-untyped-def]
    refused = {"error": {"code": "permission_denied", "message": "Only administrators can do that.", "details": {}}}
    alice_client, bob_client = api(alice), api(bob)
    for method, path, body in (
        ("post", "/api/v1/teams/", {"name": "Mine"}),
        ("patch", "/api/v1/teams/lab-1/", {"name": "Mine"}),
        ("delete", "/api/v1/teams/lab-1/", None),
        ("post", "/api/v1/teams/lab-1/members/", {"user": "bob"}),
        ("patch", "/api/v1/teams/lab-1/members/ivy/", {"role": "member"}),
        ("delete", "/api/v1/teams/lab-1/members/ivy/", None),
    ):
        response = getattr(alice_client, method)(path, body, content_type="application/json")
        assert (response.status_code, response.json()) == (403, refused)
        outsider = getattr(bob_client, method)(path, body, content_type="application/json")
        assert outsider.status_code == (403 if path == "/api/v1/teams/" else 404)
        assert getattr(Client(), method)(path, body, content_type="application/json").status_code == 401
    assert members(lab) == [("alice", "member"), ("ivy", "instructor")]
    assert Team.objects.count() == 1
    assert {(e.actor_name, e.outcome) for e in AuditEvent.objects.all()} == {("alice", "denied"), ("bob", "denied")}
    assert AuditEvent.objects.count() == 12


def test_api_duplicate_name_is_409(ada, lab):  # type: ignore[no-untyped-def]
    response = api(ada).post("/api/v1/teams/", {"name": "LAB 1"}, content_type="application/json")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "conflict",
        "message": "There is already a team called LAB 1.",
        "details": {"name": "Taken."},
    }
