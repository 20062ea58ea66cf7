"""The host add/edit pages: the console address is edited, validated by the service, and shown back."""

import pytest
from django.test import Client

from hosts.models import Host
from tests.factories import PASSWORD, make_host

REMOTE = "qemu+ssh://admin@kvm2.example.com/system"


@pytest.fixture
def signed_in_ada(ada, monkeypatch):  # type: ignore[no-untyped-def]
    from kvmweb.operations import services

    monkeypatch.setattr(services, "_enqueue", lambda op_id, kind, queue: None)
    client = Client()
    assert client.login(username="ada", password=PASSWORD)
    return client


def test_admin_adds_a_remote_host_with_a_console_address(signed_in_ada):  # type: ignore[no-untyped-def]
    form = {"name": "kvm2", "uri": REMOTE, "console_address": "10.9.0.2", "enabled": "on"}
    response = signed_in_ada.post("/hosts/add/", form)
    host = Host.objects.get(name="kvm2")
    assert response.status_code == 302 and response["Location"] == f"/hosts/{host.pk}/"
    assert host.console_address == "10.9.0.2"


def test_a_wildcard_console_address_is_refused_on_its_field(signed_in_ada):  # type: ignore[no-untyped-def]
    response = signed_in_ada.post("/hosts/add/", {"name": "kvm2", "uri": REMOTE, "console_address": "0.0.0.0"})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == ["console_address"]
    assert errors["console_address"][0].startswith("0.0.0.0 would open the guests' VNC on every interface")
    assert not Host.objects.filter(name="kvm2").exists()


def test_the_edit_page_shows_and_changes_the_console_address(signed_in_ada):  # type: ignore[no-untyped-def]
    host = make_host("kvm2", uri=REMOTE, console_address="10.9.0.2")
    page = signed_in_ada.get(f"/hosts/{host.pk}/edit/")
    assert page.context["form"]["console_address"].value() == "10.9.0.2"
    form = {"name": "kvm2", "uri": REMOTE, "console_address": "kvm2.mgmt.example.com", "enabled": "on"}
    assert signed_in_ada.post(f"/hosts/{host.pk}/edit/", form).status_code == 302
    host.refresh_from_db()
    assert host.console_address == "kvm2.mgmt.example.com"


def test_a_member_cannot_change_the_console_address(alice, host):  # type: ignore[no-untyped-def]
    client = Client()
    assert client.login(username="alice", password=PASSWORD)
    form = {"name": "lab", "uri": host.uri, "console_address": "10.9.0.9", "enabled": "on"}
    assert client.post(f"/hosts/{host.pk}/edit/", form).status_code == 403
    host.refresh_from_db()
    assert host.console_address == ""
