"""The VM list renders from the database in a bounded number of queries, filters and sorts on the server."""

import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from tests.factories import make_host, make_user, make_vm
from vms.models import VirtualMachine


def add_vms(host, count: int, **fields) -> None:  # type: ignore[no-untyped-def]
    VirtualMachine.objects.bulk_create(
        VirtualMachine(
            uuid=uuid.uuid4(), host=host, name=f"vm-{i:05d}", state="running", vcpus=1, memory_kib=1024, **fields
        )
        for i in range(count)
    )


def queries_for(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


@pytest.mark.parametrize("path", ["/vms/", "/vms/?sort=-memory&state=running&search=vm-0", "/api/v1/vms/"])
def test_list_query_count_is_the_same_for_10_and_1000_vms(ada, path):  # type: ignore[no-untyped-def]
    host = make_host("big")
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    client.force_login(ada)
    add_vms(host, 10)
    small = queries_for(client, path)
    add_vms(host, 990)
    assert queries_for(client, path) == small


def test_list_filters_search_and_excludes_gone_by_default(ada):  # type: ignore[no-untyped-def]
    host, other = make_host("alpha"), make_host("beta")
    make_vm(host, "web-1")
    make_vm(host, "db-1", state="shutoff")
    make_vm(other, "web-2")
    make_vm(host, "old", state="gone")
    client = Client()
    client.force_login(ada)
    names = lambda path: [vm["name"] for vm in client.get(path, HTTP_ACCEPT="application/json").json()["results"]]  # noqa: E731
    assert names("/api/v1/vms/") == ["db-1", "web-1", "web-2"]
    assert names("/api/v1/vms/?search=web") == ["web-1", "web-2"]
    assert names(f"/api/v1/vms/?host={host.pk}&state=shutoff") == ["db-1"]
    assert names("/api/v1/vms/?state=gone") == ["old"]
    assert names("/api/v1/vms/?sort=-name") == ["web-2", "web-1", "db-1"]
    assert names("/api/v1/vms/?search=beta") == ["web-2"]  # the host's name matches too


def test_users_see_only_their_own_vms(alice, bob):  # type: ignore[no-untyped-def]
    host = make_host("shared", members=(alice, bob))
    mine = make_vm(host, "alice-vm", owner=alice)
    make_vm(host, "bob-vm", owner=bob)
    make_vm(host, "nobodys")
    client = Client()
    client.force_login(alice)
    body = client.get("/api/v1/vms/").json()
    assert [vm["name"] for vm in body["results"]] == ["alice-vm"]
    assert client.get(f"/api/v1/vms/{mine.uuid}/").json()["owner"] == "alice"
    bobs = VirtualMachine.objects.get(name="bob-vm")
    assert client.get(f"/api/v1/vms/{bobs.uuid}/").status_code == 404
    assert client.get(f"/vms/{bobs.uuid}/").status_code == 404


def test_vm_detail_api_has_the_exact_shape(ada):  # type: ignore[no-untyped-def]
    vm = make_vm(make_host("h"), "exact", owner=make_user("carol"), xml="<domain/>")
    client = Client()
    client.force_login(ada)
    body = client.get(f"/api/v1/vms/{vm.uuid}/").json()
    assert set(body) == {
        "uuid", "name", "host", "host_name", "state", "state_reason", "vcpus", "memory_kib", "max_memory_kib",
        "autostart", "persistent", "has_managed_save", "domain_type", "os_type", "arch", "title", "owner",
        "security_model", "security_label", "version", "first_seen", "state_changed", "gone_since", "addresses",
        "description", "xml",
    }  # fmt: skip
    assert (body["uuid"], body["owner"], body["host_name"], body["xml"]) == (str(vm.uuid), "carol", "h", "<domain/>")


NICS = [
    {
        "mac": "52:54:00:aa:bb:01",
        "name": "eth0",
        "source": "agent",
        "addresses": [
            {"type": "ipv6", "address": "fd77::5", "prefix": 64},
            {"type": "ipv4", "address": "10.77.0.5", "prefix": 24},
            {"type": "ipv4", "address": "10.77.0.6", "prefix": 24},
        ],
    },
    {"mac": "52:54:00:aa:bb:02", "name": "eth1", "source": "lease", "addresses": []},
]


def test_vm_api_answers_the_addresses_kept_on_the_row(alice):  # type: ignore[no-untyped-def]
    vm = make_vm(make_host("h", members=(alice,)), "addressed", owner=alice, addresses=NICS)
    make_vm(vm.host, "stopped", owner=alice, state="shutoff")
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")

    listed = {row["name"]: row["addresses"] for row in client.get("/api/v1/vms/").json()["results"]}

    assert listed == {"addressed": NICS, "stopped": []}
    assert client.get(f"/api/v1/vms/{vm.uuid}/").json()["addresses"] == NICS


def test_vm_list_shows_the_first_ipv4_of_each_nic_where_vm_addresses_update_it(alice):  # type: ignore[no-untyped-def]
    host = make_host("h", members=(alice,))
    three = [
        NICS[0],
        *({"mac": f"52:54:00:aa:bb:2{i}", "addresses": [{"type": "ipv4", "address": f"10.9.0.{i}"}]} for i in (1, 2)),
    ]
    one = make_vm(host, "one", owner=alice, addresses=NICS)
    many = make_vm(host, "many", owner=alice, addresses=three)
    none = make_vm(host, "none", owner=alice, state="shutoff")
    client = Client()
    client.force_login(alice)

    page = client.get("/vms/").content.decode()

    cell = '<td class="kv-hide-phone kv-nowrap" data-vm-ipv4>{}</td>'
    assert f'data-vm-addresses="{one.uuid}"' in page and "js/vm_nics.js" in page
    assert cell.format('<span class="kv-mono kv-ip">10.77.0.5</span>') in page  # the first IPv4 only, not IPv6
    assert (
        cell.format(
            '<span class="kv-mono kv-ip">10.77.0.5</span><span class="kv-mono kv-ip">10.9.0.1</span>'
            '<span class="kv-muted" title="10.77.0.5, 10.9.0.1, 10.9.0.2">+1</span>'
        )
        in page
    )
    assert f'data-vm-addresses="{many.uuid}"' in page and f'data-vm-addresses="{none.uuid}"' in page
    assert cell.format("") in page  # a VM that does not run has none


def test_hosts_list_counts_only_the_vms_each_user_may_see(ada, alice):  # type: ignore[no-untyped-def]
    from hosts.selectors import hosts_for_list

    host = make_host("counted", members=(alice,))
    make_vm(host, "hers", owner=alice)
    make_vm(host, "other")
    make_vm(host, "old", owner=alice, state="gone")
    assert [(h.name, h.vm_count) for h in hosts_for_list(ada)] == [("counted", 2)]
    assert [(h.name, h.vm_count) for h in hosts_for_list(alice)] == [("counted", 1)]
    client = Client()
    client.force_login(alice)
    assert f'href="/vms/?host={host.pk}"' in client.get("/hosts/").content.decode()


@pytest.mark.parametrize(("path", "label"), [("/networks/", "networks"), ("/storage/", "storage pools")])
def test_per_host_lists_filter_by_host_with_a_clear_link(ada, path, label):  # type: ignore[no-untyped-def]
    first = make_host("one")
    make_host("two")
    client = Client()
    client.force_login(ada)
    page = client.get(f"{path}?host={first.pk}").content.decode()
    assert f'aria-label="Filter {label}"' in page
    assert f'<option value="{first.pk}" selected>one</option>' in page
    assert f'href="{path}"' in page  # Clear
