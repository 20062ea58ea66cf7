"""GET /api/v1/stats/<kind>/<key>/: a chart's history, for those who may see the object only."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from stats.models import StatSample
from stats.objects import bucket_start
from tests.factories import make_host
from vms.models import VirtualMachine

VM = "6695eb01-f6a4-8304-79aa-97f2502e193f"


@pytest.fixture
def vm(host, alice):  # type: ignore[no-untyped-def]
    return VirtualMachine.objects.create(uuid=VM, host=host, name="web1", state="running", owner=alice)


@pytest.fixture
def series(vm):  # type: ignore[no-untyped-def]
    """Two 10 s points in the last hour, one older, and a 1 min point: only the first two draw 1h."""
    now = bucket_start(timezone.now(), 10)
    rows = [
        StatSample(kind="vm", object_key=VM, resolution=10, ts=now - timedelta(seconds=20), cpu_pct=12.5,
                   mem_used_kib=1024, mem_total_kib=2048, disk_rd_bps=0.0, disk_wr_bps=512.0, net_rx_bps=None,
                   net_tx_bps=None),
        StatSample(kind="vm", object_key=VM, resolution=10, ts=now - timedelta(seconds=10), cpu_pct=None,
                   mem_used_kib=1100, mem_total_kib=2048),
        StatSample(kind="vm", object_key=VM, resolution=10, ts=now - timedelta(hours=2), cpu_pct=99),
        StatSample(kind="vm", object_key=VM, resolution=60, ts=now - timedelta(minutes=5), cpu_pct=7),
    ]  # fmt: skip
    StatSample.objects.bulk_create(rows)
    return now


def client_for(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.mark.parametrize("persona", ["ada", "alice"])
def test_admin_and_owner_get_the_vms_last_hour(request, series, persona):  # type: ignore[no-untyped-def]
    user = request.getfixturevalue(persona)
    response = client_for(user).get(f"/api/v1/stats/vm/{VM}/?range=1h")

    assert response.status_code == 200
    start = int(series.timestamp())
    assert response.json() == {
        "object": f"vm:{VM}",
        "range": "1h",
        "resolution": 10,
        "points": [
            [start - 20, 12.5, 1024, 2048, 0.0, 512.0, None, None],
            [start - 10, None, 1100, 2048, None, None, None, None],
        ],
    }


def test_the_day_is_drawn_from_one_minute_points(alice, series):  # type: ignore[no-untyped-def]
    body = client_for(alice).get(f"/api/v1/stats/vm/{VM.upper()}/?range=1d").json()
    assert (body["object"], body["resolution"]) == (f"vm:{VM}", 60)
    assert [p[1] for p in body["points"]] == [7]


def test_other_user_gets_404(bob, series):  # type: ignore[no-untyped-def]
    response = client_for(bob).get(f"/api/v1/stats/vm/{VM}/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "details": {}}}


def test_unknown_vm_looks_the_same_as_a_hidden_one(ada, db):  # type: ignore[no-untyped-def]
    response = client_for(ada).get("/api/v1/stats/vm/00000000-0000-0000-0000-000000000000/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_anonymous_gets_401(series):  # type: ignore[no-untyped-def]
    response = client_for(None).get(f"/api/v1/stats/vm/{VM}/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_host_series_for_members_and_not_for_others(alice, bob, host):  # type: ignore[no-untyped-def]
    other = make_host("other")
    StatSample.objects.create(kind="host", object_key=str(host.pk), resolution=10, ts=timezone.now(), cpu_pct=3)

    assert client_for(alice).get(f"/api/v1/stats/host/{host.pk}/").json()["points"][0][1] == 3
    assert client_for(alice).get(f"/api/v1/stats/host/{other.pk}/").status_code == 404
    assert client_for(bob).get(f"/api/v1/stats/host/{host.pk}/").status_code == 404


@pytest.mark.parametrize("path", ["/api/v1/stats/disk/1/", "/api/v1/stats/vm/not-a-uuid/", "/api/v1/stats/host/x/"])
def test_malformed_objects_are_not_found(ada, path):  # type: ignore[no-untyped-def]
    assert client_for(ada).get(path).status_code == 404


def test_unknown_range_is_invalid(alice, series):  # type: ignore[no-untyped-def]
    response = client_for(alice).get(f"/api/v1/stats/vm/{VM}/?range=1y")
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "Unknown range '1y'; use one of: 1h, 1d, 30d.",
            "details": {"range": "1y"},
        }
    }


def test_history_is_two_queries_whatever_its_length(alice, vm, django_assert_max_num_queries):  # type: ignore[no-untyped-def]
    now = bucket_start(timezone.now(), 10)
    StatSample.objects.bulk_create(
        StatSample(kind="vm", object_key=VM, resolution=10, ts=now - timedelta(seconds=10 * i), cpu_pct=i)
        for i in range(360)
    )
    client = client_for(alice)
    with django_assert_max_num_queries(2):
        body = client.get(f"/api/v1/stats/vm/{VM}/").json()
    assert len(body["points"]) == 360
    assert body["points"][0][0] < body["points"][-1][0]
