"""A full reconcile makes the database match what a host reports, on libvirt test-driver node files."""

import uuid

import pytest

from hosts.inventory import host_reconcile
from kvmweb import virt
from tests.factories import make_host, make_user
from tests.nodefiles import Guest, write_node
from vms.models import VirtualMachine

A, B, C = (str(uuid.uuid4()) for _ in range(3))


@pytest.fixture
def node(tmp_path):  # type: ignore[no-untyped-def]
    """Each call writes a fresh node file (the test driver reads it once per connection)."""
    counter = iter(range(1000))

    def write(guests: list[Guest]) -> str:
        return write_node(tmp_path / f"node-{next(counter)}.xml", guests)

    return write


def reconcile(host, uri: str) -> dict:  # type: ignore[no-untyped-def]
    host.uri = uri
    host.save(update_fields=["uri"])
    return host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))


def rows() -> dict[str, VirtualMachine]:
    return {str(vm.uuid): vm for vm in VirtualMachine.objects.all()}


def test_new_vms_appear_unowned_with_their_state(db, node):  # type: ignore[no-untyped-def]
    host = make_host("sim")
    result = reconcile(host, node([Guest("web", A), Guest("db", B, state="shutoff", vcpus=2), Guest("p", C, "paused")]))
    assert (result["vms"], result["vms_new"]) == (3, 3)
    found = rows()
    assert {(vm.name, vm.state, vm.owner_id, vm.host_id) for vm in found.values()} == {
        ("web", "running", None, host.pk),
        ("db", "shutoff", None, host.pk),
        ("p", "paused", None, host.pk),
    }
    assert found[B].vcpus == 2 and found[A].xml.startswith("<domain")


def test_vanished_vm_is_marked_gone_and_keeps_owner_and_history(db, node):  # type: ignore[no-untyped-def]
    host, alice = make_host("sim"), make_user("alice")
    reconcile(host, node([Guest("web", A), Guest("db", B)]))
    VirtualMachine.objects.filter(uuid=B).update(owner=alice)
    result = reconcile(host, node([Guest("web", A)]))
    assert result["vms_gone"] == 1
    gone = rows()[B]
    assert (gone.state, gone.owner_id, gone.name) == ("gone", alice.pk, "db") and gone.gone_since is not None
    # And it comes back, same row, same owner.
    reconcile(host, node([Guest("web", A), Guest("db", B)]))
    back = rows()[B]
    assert (back.pk, back.state, back.owner_id, back.gone_since) == (gone.pk, "running", alice.pk, None)


def test_rename_and_redefine_outside_kvmweb_keep_uuid_row_and_owner(db, node):  # type: ignore[no-untyped-def]
    host, alice = make_host("sim"), make_user("alice")
    reconcile(host, node([Guest("web", A)]))
    VirtualMachine.objects.filter(uuid=A).update(owner=alice)
    before = rows()[A]
    reconcile(host, node([Guest("frontend", A, state="shutoff", vcpus=4, memory_kib=524288)]))
    after = rows()[A]
    assert after.pk == before.pk and after.owner_id == alice.pk
    assert (after.name, after.state, after.vcpus, after.memory_kib) == ("frontend", "shutoff", 4, 524288)
    assert after.version == before.version + 1


def test_unchanged_host_changes_nothing(db, node):  # type: ignore[no-untyped-def]
    host = make_host("sim")
    guests = [Guest("web", A), Guest("db", B)]
    reconcile(host, node(guests))
    versions = {k: vm.version for k, vm in rows().items()}
    result = reconcile(host, node(guests))
    assert (result["vms_new"], result["vms_changed"], result["vms_gone"]) == (0, 0, 0)
    assert {k: vm.version for k, vm in rows().items()} == versions


def test_a_running_vms_persistent_definition_is_kept_and_follows_a_redefine(db, node):  # type: ignore[no-untyped-def]
    host = make_host("sim")
    reconcile(host, node([Guest("web", A), Guest("db", B, state="shutoff")]))
    target = host.virt_target()
    assert rows()[A].xml_inactive == virt.get_domain_xml(target, A, inactive=True) != rows()[A].xml
    assert rows()[B].xml_inactive == "" and rows()[B].xml == virt.get_domain_xml(target, B, inactive=True)
    before = rows()[A]
    edited = before.xml_inactive.replace("</uuid>", "</uuid>\n  <description>after a reboot</description>", 1)
    virt.define_domain(target, edited)

    result = host_reconcile(host=host, inventory=virt.get_inventory(target))

    after = rows()[A]
    assert result["vms_changed"] == 1 and after.version == before.version + 1
    assert "after a reboot" in after.xml_inactive and after.xml == before.xml
    assert after.xml_inactive == virt.get_domain_xml(target, A, inactive=True)


def test_a_vm_alive_on_another_host_moves_there(db, node):  # type: ignore[no-untyped-def]
    source, target = make_host("src"), make_host("dst")
    reconcile(source, node([Guest("mig", A, state="shutoff")]))
    reconcile(target, node([Guest("mig", A, state="running")]))
    assert rows()[A].host_id == target.pk
    # The source still lists its shut-off definition: the row stays with the running copy.
    reconcile(source, node([Guest("mig", A, state="shutoff")]))
    assert (rows()[A].host_id, rows()[A].state) == (target.pk, "running")


def test_reconcile_publishes_one_message_per_changed_vm(db, node, django_capture_on_commit_callbacks, monkeypatch):  # type: ignore[no-untyped-def]
    from kvmweb.realtime import publish as publish_module

    sent: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(publish_module, "_send", lambda groups, payload, *_: sent.append((groups, payload)))
    host, alice = make_host("sim"), make_user("alice")
    reconcile(host, node([Guest("web", A)]))
    VirtualMachine.objects.filter(uuid=A).update(owner=alice)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        reconcile(host, node([Guest("web", A, state="paused")]))
    [(groups, payload)] = sent
    assert groups == sorted(["admins", f"user.{alice.pk}", f"vm.{A}"])
    assert (payload["type"], payload["vm"], payload["state"], payload["v"]) == ("vm.state", A, "paused", 1)


def test_a_reconcile_racing_another_for_a_new_host_upserts_its_rows(db, node, monkeypatch):  # type: ignore[no-untyped-def]
    """The worker's reconcile of a host just added and the events process's, on connecting, both index it:
    rows the other one inserted after this one looked are updated, not a unique violation that fails the add."""
    from networks import services as network_services
    from networks.models import Network
    from storage import services as storage_services
    from storage.models import StoragePool
    from vms import services as vm_services

    host = make_host("sim")

    def racing(module, name, insert):  # type: ignore[no-untyped-def]
        values_of = getattr(module, name)

        def the_other_process_got_there_first(*args):  # type: ignore[no-untyped-def]
            insert(args[-1])  # the record being indexed, inserted just after this reconcile read its rows
            return values_of(*args)

        monkeypatch.setattr(module, name, the_other_process_got_there_first)

    racing(
        vm_services,
        "observed_fields",
        lambda r: VirtualMachine.objects.get_or_create(
            uuid=r.uuid, defaults={"host": host, "name": "old", "state": "shutoff", "state_changed": host.created}
        ),
    )
    racing(network_services, "_values", lambda r: Network.objects.get_or_create(host=host, uuid=r.uuid, name="old"))
    racing(
        storage_services,
        "_pool_values",
        lambda r: StoragePool.objects.get_or_create(host=host, uuid=r.uuid, name="old"),
    )
    reconcile(host, "test:///default")  # a guest, a network and a pool

    assert VirtualMachine.objects.exists() and not VirtualMachine.objects.filter(name="old").exists()
    assert Network.objects.exists() and not Network.objects.filter(name="old").exists()
    assert StoragePool.objects.exists() and not StoragePool.objects.filter(name="old").exists()
