"""DHCP of networks on libvirt's test driver: reservations (checks, operations, API, pages) and the lease refresh.

Each test gets its own fake host (a test-driver node file) with a NAT network "dhcpnet" (10.91.0.0/24, gateway
.1, range .100-.199, one reservation; fd91::/64, gateway fd91::1, range fd91::100-1ff, one reservation by DUID
and name) and a network "plain" without DHCP. ada administers; alice is a member of
the host (she sees its networks but may not change them); bob is not.

The test driver cannot list leases (virNetworkGetDHCPLeases is not supported), so the lease refresh tests
replace that one adapter call with readings; real leases are covered in the lab test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from kvmweb import virt
from kvmweb.audit.models import AuditEvent
from kvmweb.errors import Conflict, Forbidden, Invalid, NotVisible
from kvmweb.operations.models import Operation
from kvmweb.realtime import publish as publish_module
from kvmweb.virt import network_dhcp as virt_dhcp
from kvmweb.virt.network_dhcp import DhcpLease, DhcpReservation
from networks import dhcp
from networks.actions import network_sync
from networks.dhcp_reservations import (
    reservation_add,
    reservation_edit,
    reservation_remove,
)
from networks.models import Network, NetworkLease
from tests.factories import PASSWORD, make_host
from tests.runs import actor_of, run
from tests.unit.virt.test_virt_network_dhcp import FIRST6, NET_UUID, PLAIN_UUID, dhcp_node

FIRST = DhcpReservation("52:54:00:aa:00:01", "10.91.0.10", "first")


@pytest.fixture
def lab(alice: Any, tmp_path: Path) -> Iterator[Any]:
    host = make_host("dhcphost", uri=dhcp_node(tmp_path / "node.xml"), members=(alice,))
    network_sync(host, NET_UUID)
    network_sync(host, PLAIN_UUID)
    yield host
    virt.close_all()


@pytest.fixture
def net(lab: Any) -> Network:
    return Network.objects.get(host=lab, uuid=NET_UUID)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, Any]]]:
    """What reached the channel layer (after commit), as (groups, message)."""
    captured: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(publish_module, "_send", lambda groups, payload, *_: captured.append((groups, payload)))
    return captured


@pytest.fixture
def refresh(django_capture_on_commit_callbacks: Any) -> Callable[[Any], int]:
    """One lease refresh of the host, its commit callbacks (the pushes) run as a real commit would."""

    def run_refresh(host: Any) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return dhcp.networks_refresh_leases(host_id=host.pk)

    return run_refresh


def on_host(host: Any, family: str = "ipv4") -> tuple[DhcpReservation, ...]:
    config = virt_dhcp.ip_dhcp(virt.get_network_record(host.virt_target(), NET_UUID).xml, family)
    assert config is not None
    return config.reservations


def succeeded(op: Operation) -> Operation:
    done = run(op)
    assert done.status == Operation.Status.SUCCEEDED, done.error
    return done


# Reservations: the service and its operations


def test_adding_a_reservation_applies_it_and_refreshes_the_row(ada: Any, net: Network, queued: list[int]) -> None:
    op = reservation_add(actor=actor_of(ada), network=net, data={"mac": "52:54:00:AA:00:02", "ip": "10.91.0.150"})

    assert op.kind == "network.reservation-add" and op.params == {
        "new": {"family": "ipv4", "mac": "52:54:00:aa:00:02", "duid": "", "ip": "10.91.0.150", "name": ""}
    }
    succeeded(op)
    new = DhcpReservation("52:54:00:aa:00:02", "10.91.0.150", "")
    assert on_host(net.host) == (FIRST, new)
    net.refresh_from_db()
    assert dhcp.panel_context(user=ada, network=net)["dhcp_reservations"] == [FIRST, new]
    audited = AuditEvent.objects.get(action="network.reservation-add")
    assert (audited.outcome, audited.target_type, audited.target_id) == ("succeeded", "network", str(net.pk))


def test_editing_a_reservation_changes_its_ip_and_name(ada: Any, net: Network, queued: list[int]) -> None:
    succeeded(
        reservation_edit(actor=actor_of(ada), network=net, key=FIRST.mac, data={"ip": "10.91.0.20", "name": "db"})
    )

    assert on_host(net.host) == (DhcpReservation(FIRST.mac, "10.91.0.20", "db"),)


def test_editing_a_reservations_mac_moves_it_to_the_new_card(ada: Any, net: Network, queued: list[int]) -> None:
    succeeded(reservation_edit(actor=actor_of(ada), network=net, key=FIRST.mac, data={"mac": "52:54:00:aa:00:09"}))

    assert on_host(net.host) == (DhcpReservation("52:54:00:aa:00:09", FIRST.ip, FIRST.name),)


def test_removing_a_reservation_removes_it(ada: Any, net: Network, queued: list[int]) -> None:
    succeeded(reservation_remove(actor=actor_of(ada), network=net, key=FIRST.mac.upper()))

    assert on_host(net.host) == ()
    net.refresh_from_db()
    assert dhcp.panel_context(user=ada, network=net)["dhcp_reservations"] == []


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"mac": "", "ip": "10.91.0.50"}, "mac", "Enter the MAC address"),
        ({"mac": "52:54:00:zz:00:02", "ip": "10.91.0.50"}, "mac", "is not a MAC address"),
        ({"mac": "52:54:00:aa:00", "ip": "10.91.0.50"}, "mac", "is not a MAC address"),
        ({"mac": "01:00:5e:00:00:01", "ip": "10.91.0.50"}, "mac", "is a multicast address"),
        ({"mac": "52:54:00:aa:00:02", "ip": ""}, "ip", "Enter the IPv4 address to reserve, inside 10.91.0.0/24"),
        ({"mac": "52:54:00:aa:00:02", "ip": "10.91.0.300"}, "ip", "is not an IPv4 address"),
        ({"mac": "52:54:00:aa:00:02", "ip": "fd91::5"}, "ip", "is not an IPv4 address"),
        ({"mac": "52:54:00:aa:00:02", "ip": "10.92.0.5"}, "ip", "outside the network's subnet 10.91.0.0/24"),
        ({"mac": "52:54:00:aa:00:02", "ip": "10.91.0.1"}, "ip", "is the network's gateway"),
        ({"mac": "52:54:00:aa:00:02", "ip": "10.91.0.0"}, "ip", "subnet's network address"),
        ({"mac": "52:54:00:aa:00:02", "ip": "10.91.0.255"}, "ip", "subnet's broadcast address"),
        ({"mac": "52:54:00:aa:00:02", "ip": "10.91.0.50", "name": "bad name!"}, "name", "is not a host name"),
        ({"mac": "52:54:00:aa:00:02", "ip": "10.91.0.50", "name": "-lead"}, "name", "is not a host name"),
    ],
)
def test_bad_input_is_refused_per_field_and_changes_nothing(
    ada: Any, net: Network, queued: list[int], data: dict[str, str], field: str, words: str
) -> None:
    with pytest.raises(Invalid) as refused:
        reservation_add(actor=actor_of(ada), network=net, data=data)

    assert list(refused.value.details) == [field] and words in str(refused.value.details[field])
    assert words in refused.value.message
    assert not Operation.objects.exists() and queued == []
    assert on_host(net.host) == (FIRST,)
    assert AuditEvent.objects.get(action="network.reservation-add").outcome == "failed"


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"mac": "52:54:00:AA:00:01", "ip": "10.91.0.50"}, "mac", "52:54:00:aa:00:01 already has a reservation"),
        ({"mac": "52:54:00:aa:00:02", "ip": "10.91.0.10"}, "ip", "10.91.0.10 is already reserved"),
        ({"mac": "52:54:00:aa:00:02", "ip": "10.91.0.50", "name": "FIRST"}, "name", "The name FIRST is already used"),
    ],
)
def test_overlapping_another_reservation_is_refused(
    ada: Any, net: Network, queued: list[int], data: dict[str, str], field: str, words: str
) -> None:
    with pytest.raises(Conflict) as refused:
        reservation_add(actor=actor_of(ada), network=net, data=data)

    assert list(refused.value.details) == [field] and words in str(refused.value.details[field])
    assert "52:54:00:aa:00:01 → 10.91.0.10 (first)" in refused.value.message
    assert not Operation.objects.exists() and on_host(net.host) == (FIRST,)


def test_a_reservation_outside_the_range_but_inside_the_subnet_is_accepted(
    ada: Any, net: Network, queued: list[int]
) -> None:
    op = reservation_add(actor=actor_of(ada), network=net, data={"mac": "52:54:00:aa:00:03", "ip": "10.91.0.250"})
    succeeded(op)
    assert DhcpReservation("52:54:00:aa:00:03", "10.91.0.250", "") in on_host(net.host)


def test_editing_a_reservation_may_keep_its_own_ip_and_name(ada: Any, net: Network, queued: list[int]) -> None:
    op = reservation_edit(actor=actor_of(ada), network=net, key=FIRST.mac, data={"ip": "10.91.0.10", "name": "x1"})
    assert op.params["new"] == {"family": "ipv4", "mac": FIRST.mac, "duid": "", "ip": "10.91.0.10", "name": "x1"}


def test_an_edit_that_changes_nothing_is_refused(ada: Any, net: Network, queued: list[int]) -> None:
    with pytest.raises(Invalid, match="Nothing to change"):
        reservation_edit(actor=actor_of(ada), network=net, key=FIRST.mac, data={"ip": FIRST.ip})


def test_editing_or_removing_an_unknown_reservation_is_not_found(ada: Any, net: Network, queued: list[int]) -> None:
    with pytest.raises(NotVisible, match="has no DHCP reservation for 52:54:00:aa:00:77"):
        reservation_remove(actor=actor_of(ada), network=net, key="52:54:00:aa:00:77")
    with pytest.raises(NotVisible):
        reservation_edit(actor=actor_of(ada), network=net, key="52:54:00:aa:00:77", data={"ip": "10.91.0.5"})
    assert not Operation.objects.exists()


def test_a_network_without_ipv4_dhcp_takes_no_reservations(ada: Any, lab: Any, queued: list[int]) -> None:
    plain = Network.objects.get(host=lab, uuid=PLAIN_UUID)
    with pytest.raises(Conflict) as refused:
        reservation_add(actor=actor_of(ada), network=plain, data={"mac": "52:54:00:aa:00:02", "ip": "10.91.0.5"})
    assert refused.value.details == {"network": "plain has no IPv4 DHCP server, so it cannot hold IPv4 reservations."}


def test_an_unreachable_host_takes_no_reservations(ada: Any, net: Network, queued: list[int]) -> None:
    net.host.state = net.host.State.UNREACHABLE
    net.host.save()
    with pytest.raises(Conflict, match="unreachable"):
        reservation_add(actor=actor_of(ada), network=net, data={"mac": "52:54:00:aa:00:02", "ip": "10.91.0.5"})


def test_only_administrators_change_reservations(alice: Any, net: Network, queued: list[int]) -> None:
    with pytest.raises(Forbidden):
        reservation_add(actor=actor_of(alice), network=net, data={"mac": "52:54:00:aa:00:02", "ip": "10.91.0.5"})
    with pytest.raises(Forbidden):
        reservation_remove(actor=actor_of(alice), network=net, key=FIRST.mac)
    assert not Operation.objects.exists()
    assert set(AuditEvent.objects.values_list("outcome", flat=True)) == {"denied"}
    assert dhcp.panel_context(user=alice, network=net)["dhcp_may_manage"] is False


# The API


def api(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


def test_api_lists_reservations_and_leases(alice: Any, net: Network) -> None:
    seen = timezone.now()
    NetworkLease.objects.create(
        network=net, mac="52:54:00:aa:00:05", ip="10.91.0.150", prefix=24, hostname="guest", client_id="",
        expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), type="ipv4", seen=seen,
    )  # fmt: skip
    client = api(alice)

    assert client.get(f"/api/v1/networks/{net.pk}/reservations/").json() == {
        "reservations": [
            {"family": "ipv4", "mac": "52:54:00:aa:00:01", "duid": "", "ip": "10.91.0.10", "name": "first"},
            {"family": "ipv6", "mac": "", "duid": FIRST6.duid, "ip": "fd91::10", "name": "first6"},
        ]
    }
    assert client.get(f"/api/v1/networks/{net.pk}/leases/").json() == {
        "leases": [
            {"mac": "52:54:00:aa:00:05", "ip": "10.91.0.150", "prefix": 24, "hostname": "guest", "client_id": "",
             "expires": "2030-01-02T03:04:05+00:00", "type": "ipv4"}
        ],
        "updated": seen.isoformat(),
    }  # fmt: skip


def test_api_with_no_leases_says_so(alice: Any, net: Network) -> None:
    assert api(alice).get(f"/api/v1/networks/{net.pk}/leases/").json() == {"leases": [], "updated": None}


def test_api_adds_edits_and_removes_reservations_as_operations(ada: Any, net: Network, queued: list[int]) -> None:
    client = api(ada)
    base = f"/api/v1/networks/{net.pk}/reservations/"

    added = client.post(base, {"mac": "52:54:00:aa:00:02", "ip": "10.91.0.11"}, content_type="application/json")
    assert added.status_code == 202 and added.json()["operation"]["kind"] == "network.reservation-add"
    succeeded(Operation.objects.get(pk=added.json()["operation"]["id"]))
    edited = client.patch(f"{base}52:54:00:aa:00:02/", {"name": "web"}, content_type="application/json")
    assert edited.status_code == 202 and edited.json()["operation"]["kind"] == "network.reservation-edit"
    succeeded(Operation.objects.get(pk=edited.json()["operation"]["id"]))
    assert client.get(base).json()["reservations"][1] == {
        "family": "ipv4",
        "mac": "52:54:00:aa:00:02",
        "duid": "",
        "ip": "10.91.0.11",
        "name": "web",
    }
    removed = client.delete(f"{base}52:54:00:aa:00:02/")
    assert removed.status_code == 202 and removed.json()["operation"]["kind"] == "network.reservation-remove"
    succeeded(Operation.objects.get(pk=removed.json()["operation"]["id"]))
    assert on_host(net.host) == (FIRST,)


def test_api_refusals_have_the_error_shape(ada: Any, alice: Any, bob: Any, net: Network, queued: list[int]) -> None:
    base = f"/api/v1/networks/{net.pk}/reservations/"
    body = {"mac": "52:54:00:aa:00:02", "ip": "10.91.0.1"}

    bad = api(ada).post(base, body, content_type="application/json")
    assert (bad.status_code, bad.json()) == (
        400,
        {"error": {"code": "invalid", "message": "10.91.0.1 is the network's gateway (the host's own address on it).",
                   "details": {"ip": "10.91.0.1 is the network's gateway (the host's own address on it)."}}},
    )  # fmt: skip
    denied = api(alice).post(base, {**body, "ip": "10.91.0.5"}, content_type="application/json")
    assert (denied.status_code, denied.json()) == (
        403,
        {"error": {"code": "permission_denied", "message": "Only administrators can do that.", "details": {}}},
    )
    hidden = api(bob)
    for response in (hidden.get(base), hidden.get(f"/api/v1/networks/{net.pk}/leases/"), hidden.delete(f"{base}x/")):
        assert (response.status_code, response.json()) == (
            404,
            {"error": {"code": "not_found", "message": "No such network.", "details": {}}},
        )
    assert Client().get(base).status_code == 401
    assert not Operation.objects.exists()


# The lease refresh


def lease(mac: str, ip: str, *, minutes: int = 60, hostname: str = "") -> DhcpLease:
    expires = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return DhcpLease(mac=mac, ip=ip, prefix=24, hostname=hostname, client_id="", expires=expires, type="ipv4")


@pytest.fixture
def readings(monkeypatch: pytest.MonkeyPatch) -> list[tuple[DhcpLease, ...]]:
    """What libvirt reports on each read (the test driver cannot list leases); the last one repeats."""
    queue: list[tuple[DhcpLease, ...]] = []

    def read(target: virt.HostTarget, uuid: str) -> tuple[DhcpLease, ...]:
        assert uuid == NET_UUID  # the network without DHCP is never read
        return queue.pop(0) if len(queue) > 1 else queue[0]

    monkeypatch.setattr(virt_dhcp, "get_dhcp_leases", read)
    return queue


def test_new_leases_are_stored_and_pushed_to_who_may_see_the_network(
    lab: Any, net: Network, readings: list[Any], sent: list[Any], refresh: Any
) -> None:
    readings.append((lease("52:54:00:aa:00:05", "10.91.0.150", hostname="guest"),))

    assert refresh(lab) == 1

    assert list(NetworkLease.objects.values_list("mac", "ip", "hostname")) == [
        ("52:54:00:aa:00:05", "10.91.0.150", "guest")
    ]
    assert sent == [
        (
            ["admins", f"host.{lab.pk}"],
            {"type": "network.leases", "network": net.pk, "host": lab.pk, "v": 1,
             "leases": [{"mac": "52:54:00:aa:00:05", "ip": "10.91.0.150", "prefix": 24, "hostname": "guest",
                         "client_id": "", "expires": "2030-01-01T01:00:00+00:00", "type": "ipv4"}]},
        )
    ]  # fmt: skip


def test_an_unchanged_reading_writes_and_pushes_nothing(
    lab: Any, net: Network, readings: list[Any], sent: list[Any], refresh: Any
) -> None:
    readings.append((lease("52:54:00:aa:00:05", "10.91.0.150"), lease("52:54:00:aa:00:06", "10.91.0.151")))
    refresh(lab)
    ids = set(NetworkLease.objects.values_list("pk", flat=True))

    assert refresh(lab) == 0

    assert set(NetworkLease.objects.values_list("pk", flat=True)) == ids
    assert len(sent) == 1


def test_a_renewed_or_released_lease_is_a_change(
    lab: Any, net: Network, readings: list[Any], sent: list[Any], refresh: Any
) -> None:
    readings.extend(
        [
            (lease("52:54:00:aa:00:05", "10.91.0.150"), lease("52:54:00:aa:00:06", "10.91.0.151")),
            (lease("52:54:00:aa:00:05", "10.91.0.150", minutes=120), lease("52:54:00:aa:00:06", "10.91.0.151")),
            (lease("52:54:00:aa:00:05", "10.91.0.150", minutes=120),),
        ]
    )
    assert [refresh(lab) for _ in range(3)] == [1, 1, 1]

    assert [len(message["leases"]) for _, message in sent] == [2, 2, 1]
    assert sent[1][1]["leases"][0]["expires"] == "2030-01-01T02:00:00+00:00"
    assert list(NetworkLease.objects.values_list("mac", flat=True)) == ["52:54:00:aa:00:05"]


def test_a_lease_listed_twice_is_kept_once_with_the_later_expiry(
    lab: Any, net: Network, readings: list[Any], sent: list[Any], refresh: Any
) -> None:
    readings.append((lease("52:54:00:aa:00:05", "10.91.0.150"), lease("52:54:00:aa:00:05", "10.91.0.150", minutes=90)))
    refresh(lab)

    assert refresh(lab) == 0
    assert list(NetworkLease.objects.values_list("expires", flat=True)) == [datetime(2030, 1, 1, 1, 30, tzinfo=UTC)]


def test_a_stopped_network_loses_its_leases(
    lab: Any, net: Network, readings: list[Any], sent: list[Any], refresh: Any
) -> None:
    readings.append((lease("52:54:00:aa:00:05", "10.91.0.150"),))
    refresh(lab)
    Network.objects.filter(pk=net.pk).update(active=False)

    assert refresh(lab) == 1

    assert not NetworkLease.objects.exists()
    assert sent[-1][1]["leases"] == []


def test_a_host_whose_networks_all_stopped_is_read_once_more_to_clear_its_leases(
    lab: Any, net: Network, readings: list[Any], sent: list[Any], refresh: Any
) -> None:
    readings.append((lease("52:54:00:aa:00:05", "10.91.0.150"),))
    refresh(lab)
    Network.objects.filter(host=lab).update(active=False)

    assert dhcp.hosts_with_leases() == [lab.pk]
    assert refresh(lab) == 1
    assert dhcp.hosts_with_leases() == []


def test_an_unreachable_host_is_not_read(lab: Any, net: Network, readings: list[Any], refresh: Any) -> None:
    lab.state = lab.State.UNREACHABLE
    lab.save()
    assert refresh(lab) == 0
    assert dhcp.hosts_with_leases() == []


def test_a_host_that_cannot_list_leases_keeps_its_rows(lab: Any, net: Network, sent: list[Any], refresh: Any) -> None:
    # The real test driver answers "not supported": nothing is written, nothing pushed.
    assert refresh(lab) == 0
    assert not NetworkLease.objects.exists() and sent == []


def test_the_beat_job_queues_one_expiring_lease_read_per_host(
    lab: Any, net: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.conf import settings

    from stats import tasks

    queued: list[tuple[Any, Any]] = []
    monkeypatch.setattr(tasks.refresh_leases_host, "apply_async", lambda args, expires: queued.append((args, expires)))

    assert tasks.refresh_leases_all() == 1
    assert queued == [([lab.pk], dhcp.LEASE_REFRESH_EVERY)]
    assert settings.CELERY_BEAT_SCHEDULE["network-leases"]["task"] == tasks.refresh_leases_all.name


# The page


def login(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


def test_the_panel_shows_leases_reservations_and_forms_to_administrators(ada: Any, alice: Any, net: Network) -> None:
    from django.template.loader import render_to_string

    NetworkLease.objects.create(network=net, mac="52:54:00:aa:00:05", ip="10.91.0.150", seen=timezone.now())
    admin_html = render_to_string(
        "networks/dhcp_panel.html", {"network": net, **dhcp.panel_context(user=ada, network=net)}
    )
    member_html = render_to_string(
        "networks/dhcp_panel.html", {"network": net, **dhcp.panel_context(user=alice, network=net)}
    )

    assert 'data-lease-mac="52:54:00:aa:00:05"' in admin_html and "10.91.0.150" in admin_html
    assert 'data-reservation-mac="52:54:00:aa:00:01"' in admin_html and "Reserve" in admin_html
    assert f'data-live-watch="leases:{net.pk}"' in admin_html
    assert 'data-reservation-mac="52:54:00:aa:00:01"' in member_html and "Reserve" not in member_html


def test_the_panel_says_when_there_are_no_leases(ada: Any, net: Network) -> None:
    from django.template.loader import render_to_string

    html = render_to_string("networks/dhcp_panel.html", {"network": net, **dhcp.panel_context(user=ada, network=net)})
    assert "No leases yet: start a VM with a NIC on this network." in html


def test_the_page_forms_queue_operations(ada: Any, net: Network, queued: list[int]) -> None:
    client = login(ada)
    base = f"/networks/{net.pk}/reservations/"

    response = client.post(base, {"mac": "52:54:00:aa:00:02", "ip": "10.91.0.12", "name": ""})
    assert response.status_code == 302 and response["Location"].endswith(f"/networks/{net.pk}/#dhcp")
    succeeded(Operation.objects.latest("pk"))
    client.post(f"{base}{FIRST.mac}/", {"mac": FIRST.mac, "ip": "10.91.0.13", "name": "first"})
    succeeded(Operation.objects.latest("pk"))
    client.post(f"{base}{FIRST.mac}/remove/")
    succeeded(Operation.objects.latest("pk"))
    assert on_host(net.host) == (DhcpReservation("52:54:00:aa:00:02", "10.91.0.12", ""),)
    assert list(Operation.objects.order_by("pk").values_list("kind", flat=True)) == [
        "network.reservation-add",
        "network.reservation-edit",
        "network.reservation-remove",
    ]
    assert client.get(base).status_code == 405


def test_a_refused_page_form_says_why_and_queues_nothing(ada: Any, net: Network, queued: list[int]) -> None:
    client = login(ada)
    response = client.post(
        f"/networks/{net.pk}/reservations/", {"mac": "bad", "ip": "10.91.0.12"}, follow=True,
        HTTP_REFERER=f"/networks/{net.pk}/",
    )  # fmt: skip
    assert "bad is not a MAC address" in response.content.decode()
    assert not Operation.objects.exists()


# IPv6 reservations (DHCPv6: a client is matched by its DUID or its name; the reservation is named by its address)

DUID2 = "00:03:00:01:52:54:00:aa:00:02"


def test_adding_an_ipv6_reservation_applies_it_to_the_ipv6_section(ada: Any, net: Network, queued: list[int]) -> None:
    data = {"family": "ipv6", "duid": "0:3:0:1:52:54:0:AA:0:2", "ip": "FD91::0:11", "name": "web6"}
    op = reservation_add(actor=actor_of(ada), network=net, data=data)

    assert op.params == {"new": {"family": "ipv6", "mac": "", "duid": DUID2, "ip": "fd91::11", "name": "web6"}}
    succeeded(op)
    new = DhcpReservation("", "fd91::11", "web6", DUID2)
    assert on_host(net.host, "ipv6") == (FIRST6, new)
    assert on_host(net.host) == (FIRST,)
    net.refresh_from_db()
    assert dhcp.panel_context(user=ada, network=net)["dhcp6_reservations"] == [FIRST6, new]


def test_an_ipv6_reservation_may_name_only_a_host(ada: Any, net: Network, queued: list[int]) -> None:
    succeeded(
        reservation_add(actor=actor_of(ada), network=net, data={"family": "ipv6", "ip": "fd91::12", "name": "db"})
    )
    assert on_host(net.host, "ipv6")[-1] == DhcpReservation("", "fd91::12", "db", "")


def test_editing_an_ipv6_reservation_found_by_its_address(ada: Any, net: Network, queued: list[int]) -> None:
    succeeded(reservation_edit(actor=actor_of(ada), network=net, key="FD91:0::10", data={"name": "", "duid": DUID2}))
    assert on_host(net.host, "ipv6") == (DhcpReservation("", "fd91::10", "", DUID2),)
    net.refresh_from_db()  # the service reads the reservation from the row, as the worker left it
    succeeded(reservation_edit(actor=actor_of(ada), network=net, key="fd91::10", data={"ip": "fd91::20"}))
    assert on_host(net.host, "ipv6") == (DhcpReservation("", "fd91::20", "", DUID2),)


def test_removing_an_ipv6_reservation_removes_only_it(ada: Any, net: Network, queued: list[int]) -> None:
    succeeded(reservation_remove(actor=actor_of(ada), network=net, key="fd91::10"))
    assert on_host(net.host, "ipv6") == () and on_host(net.host) == (FIRST,)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"mac": "52:54:00:aa:00:02", "ip": "fd91::11", "name": "a"}, "mac", "libvirt takes no MAC there"),
        ({"ip": "fd91::11"}, "duid", "Give the client's DUID or its host name"),
        ({"duid": "00:03:zz", "ip": "fd91::11"}, "duid", "is not a DUID"),
        ({"duid": "00:03", "ip": "fd91::11"}, "duid", "is not a DUID"),
        ({"duid": DUID2, "ip": ""}, "ip", "Enter the IPv6 address to reserve, inside fd91::/64"),
        ({"duid": DUID2, "ip": "10.91.0.50"}, "ip", "is not an IPv6 address"),
        ({"duid": DUID2, "ip": "fd92::11"}, "ip", "outside the network's subnet fd91::/64"),
        ({"duid": DUID2, "ip": "fd91::1"}, "ip", "is the network's gateway"),
        ({"duid": DUID2, "ip": "fd91::"}, "ip", "subnet's network address"),
        ({"duid": DUID2, "ip": "fd91::11", "name": "bad name!"}, "name", "is not a host name"),
    ],
)
def test_bad_ipv6_input_is_refused_per_field_and_changes_nothing(
    ada: Any, net: Network, queued: list[int], data: dict[str, str], field: str, words: str
) -> None:
    with pytest.raises(Invalid) as refused:
        reservation_add(actor=actor_of(ada), network=net, data={"family": "ipv6", **data})

    assert list(refused.value.details) == [field] and words in str(refused.value.details[field])
    assert not Operation.objects.exists() and queued == []
    assert on_host(net.host, "ipv6") == (FIRST6,)


def test_an_ipv4_reservation_takes_no_duid_and_the_family_is_ipv4_or_ipv6(ada: Any, net: Network) -> None:
    with pytest.raises(Invalid) as refused:
        reservation_add(
            actor=actor_of(ada), network=net, data={"mac": "52:54:00:aa:00:02", "ip": "10.91.0.50", "duid": DUID2}
        )
    assert list(refused.value.details) == ["duid"] and "a DUID only applies to IPv6" in refused.value.message
    with pytest.raises(Invalid) as refused:
        reservation_add(actor=actor_of(ada), network=net, data={"family": "ipx", "ip": "10.91.0.50"})
    assert refused.value.details == {"family": "A reservation is ipv4 or ipv6; got 'ipx'."}


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"duid": FIRST6.duid.replace("00", "0"), "ip": "fd91::11"}, "duid", f"The DUID {FIRST6.duid} already has"),
        ({"duid": DUID2, "ip": "fd91:0::10"}, "ip", "fd91::10 is already reserved"),
        ({"duid": DUID2, "ip": "fd91::11", "name": "FIRST6"}, "name", "The name FIRST6 is already used"),
    ],
)
def test_overlapping_another_ipv6_reservation_is_refused(
    ada: Any, net: Network, queued: list[int], data: dict[str, str], field: str, words: str
) -> None:
    with pytest.raises(Conflict) as refused:
        reservation_add(actor=actor_of(ada), network=net, data={"family": "ipv6", **data})

    assert list(refused.value.details) == [field] and words in str(refused.value.details[field])
    assert f"{FIRST6.duid} → fd91::10 (first6)" in refused.value.message
    assert not Operation.objects.exists() and on_host(net.host, "ipv6") == (FIRST6,)


def test_a_network_without_dhcpv6_takes_no_ipv6_reservations(ada: Any, lab: Any, queued: list[int]) -> None:
    plain = Network.objects.get(host=lab, uuid=PLAIN_UUID)
    with pytest.raises(Conflict) as refused:
        reservation_add(actor=actor_of(ada), network=plain, data={"family": "ipv6", "ip": "fd91::5", "name": "a"})
    assert refused.value.details == {"network": "plain has no IPv6 DHCP server, so it cannot hold IPv6 reservations."}


def test_an_unknown_ipv6_reservation_is_not_found_by_its_address(ada: Any, net: Network, queued: list[int]) -> None:
    with pytest.raises(NotVisible) as missing:
        reservation_remove(actor=actor_of(ada), network=net, key="fd91::77")
    assert missing.value.details == {"ip": "dhcpnet has no DHCP reservation for fd91::77."}


def test_api_adds_edits_and_removes_an_ipv6_reservation(ada: Any, net: Network, queued: list[int]) -> None:
    client = api(ada)
    base = f"/api/v1/networks/{net.pk}/reservations/"

    added = client.post(base, {"family": "ipv6", "duid": DUID2, "ip": "fd91::11"}, content_type="application/json")
    assert added.status_code == 202
    succeeded(Operation.objects.get(pk=added.json()["operation"]["id"]))
    edited = client.patch(f"{base}fd91::11/", {"name": "web6"}, content_type="application/json")
    assert edited.status_code == 202
    succeeded(Operation.objects.get(pk=edited.json()["operation"]["id"]))
    assert client.get(base).json()["reservations"][-1] == {
        "family": "ipv6", "mac": "", "duid": DUID2, "ip": "fd91::11", "name": "web6"
    }  # fmt: skip
    removed = client.delete(f"{base}fd91::11/")
    assert removed.status_code == 202
    succeeded(Operation.objects.get(pk=removed.json()["operation"]["id"]))
    assert on_host(net.host, "ipv6") == (FIRST6,)
    bad = client.post(
        base, {"family": "ipv6", "mac": "52:54:00:aa:00:02", "ip": "fd91::13"}, content_type="application/json"
    )
    assert bad.status_code == 400 and list(bad.json()["error"]["details"]) == ["mac", "duid"]


def test_the_panel_shows_both_families_and_ipv6_forms_to_administrators(ada: Any, alice: Any, net: Network) -> None:
    from django.template.loader import render_to_string

    admin_html = render_to_string(
        "networks/dhcp_panel.html", {"network": net, **dhcp.panel_context(user=ada, network=net)}
    )
    member_html = render_to_string(
        "networks/dhcp_panel.html", {"network": net, **dhcp.panel_context(user=alice, network=net)}
    )

    assert "Static IPv4 reservations" in admin_html and "Static IPv6 reservations" in admin_html
    assert 'data-reservation-mac="52:54:00:aa:00:01"' in admin_html and 'data-reservation-ip="fd91::10"' in admin_html
    assert FIRST6.duid in admin_html and "first6" in admin_html and "fd91::/64" in admin_html
    assert '<input type="hidden" name="family" value="ipv6">' in admin_html
    assert f'action="/networks/{net.pk}/reservations/fd91::10/remove/"' in admin_html
    assert 'data-reservation-ip="fd91::10"' in member_html and 'name="family"' not in member_html


def test_the_panel_of_a_network_with_only_ipv4_dhcp_has_no_ipv6_card(ada: Any, net: Network) -> None:
    from django.template.loader import render_to_string

    Network.objects.filter(pk=net.pk).update(xml=net.xml.split("<ip family='ipv6'")[0] + "</network>")
    net.refresh_from_db()
    html = render_to_string("networks/dhcp_panel.html", {"network": net, **dhcp.panel_context(user=ada, network=net)})
    assert "Static reservations" in html and "IPv6" not in html


def test_the_page_forms_manage_ipv6_reservations(ada: Any, net: Network, queued: list[int]) -> None:
    client = login(ada)
    base = f"/networks/{net.pk}/reservations/"

    client.post(base, {"family": "ipv6", "duid": "", "ip": "fd91::12", "name": "app"})
    succeeded(Operation.objects.latest("pk"))
    client.post(f"{base}fd91::12/", {"duid": DUID2, "ip": "fd91::12", "name": "app"})
    succeeded(Operation.objects.latest("pk"))
    assert on_host(net.host, "ipv6") == (FIRST6, DhcpReservation("", "fd91::12", "app", DUID2))
    client.post(f"{base}fd91::10/remove/")
    succeeded(Operation.objects.latest("pk"))
    assert on_host(net.host, "ipv6") == (DhcpReservation("", "fd91::12", "app", DUID2),)


def test_the_define_form_sends_a_dhcpv6_range_and_puts_its_refusal_next_to_it(ada: Any, lab: Any) -> None:
    from networks.forms import NetworkDefineForm

    fields = {"host": lab.pk, "mode": "isolated", "name": "v6", "ipv6_address": "fd93::1", "ipv6_prefix": "64"}
    form = NetworkDefineForm(
        {**fields, "ipv6_dhcp_start": "fd93::100", "ipv6_dhcp_end": "fd93::1ff"}, hosts=[(lab.pk, lab.name)]
    )
    assert form.is_valid(), form.errors
    assert form.to_data()["ipv6"] == {
        "address": "fd93::1",
        "prefix": 64,
        "dhcp": {"start": "fd93::100", "end": "fd93::1ff"},
    }

    html = (
        login(ada)
        .post(
            "/networks/new/", {**fields, "delay": "0", "ipv6_dhcp_start": "fd93::100", "ipv6_dhcp_end": "fd93::1:1ff"}
        )
        .content.decode()
    )
    assert 'id="id_ipv6_dhcp_start-errors"' in html and "differ only in the last group" in html
