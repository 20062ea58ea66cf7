"""Templates, create from a template, clone, delete with its disk rules, and reassigning owners, on
libvirt's test driver. alice owns her VMs and is a member of the host, bob is not, ada administers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.audit.models import AuditEvent
from kvmweb.errors import Conflict, Invalid
from kvmweb.virt import volumes
from kvmweb.virt.xml import DiskSpec, DomainSpec, NicSpec, VolumeSpec, build_domain_xml, domain_devices
from tests.factories import PASSWORD, make_host
from tests.runs import actor_of, run
from vms.actions import vm_action
from vms.catalog import visible_templates, vm_reassign, vm_set_template
from vms.create import vm_create
from vms.models import VirtualMachine

TEST_URI = "test:///default"
TARGET = virt.HostTarget(TEST_URI)
POOL = "default-pool"
CAPS = {"virt_types": ["qemu"], "arch": "x86_64", "cpus": 8, "memory_kib": 16 << 20, "free_memory_kib": 4 << 20}


@pytest.fixture
def lab(alice):  # type: ignore[no-untyped-def]
    return make_host("testhost", uri=TEST_URI, members=(alice,), capabilities=CAPS)


@pytest.fixture(autouse=True)
def _clean_test_driver() -> Iterator[None]:
    before_domains = {d.uuid for d in virt.list_domains(TARGET)}
    before_volumes = {v.path for v in volumes.host_volumes(TARGET)}
    yield
    for domain in virt.list_domains(TARGET):
        if domain.uuid not in before_domains:
            if domain.state != "shutoff":
                virt.destroy_domain(TARGET, domain.uuid)
            virt.undefine_domain(TARGET, domain.uuid)
    # Overlays first, so no backing file is removed under one.
    made = [v for v in volumes.host_volumes(TARGET) if v.path and v.path not in before_volumes]
    for volume in sorted(made, key=lambda v: v.backing_path is None):
        volumes.delete_volume(TARGET, volume.path or "")
    virt.close_all()


def reconcile(host: Any) -> None:
    host_reconcile(host=host, inventory=virt.get_inventory(TARGET))


def make_guest(host: Any, owner: Any, *, disks: int = 1, backing: str | None = None) -> VirtualMachine:
    """A shut-off guest with its own qcow2 disks in the pool (the first one an overlay when `backing`)."""
    name = f"g-{uuid.uuid4().hex[:8]}"
    specs = []
    for index in range(disks):
        volume = f"{name}-d{index}.qcow2"
        if backing is not None and index == 0:
            volumes.create_linked_volume(TARGET, POOL, backing, volume)
        else:
            volumes.create_volume(TARGET, POOL, VolumeSpec(name=volume, capacity_bytes=16 << 20))
        specs.append(DiskSpec(pool=POOL, volume=volume, target_dev=f"vd{'abcd'[index]}"))
    spec = DomainSpec(
        name=name, uuid=str(uuid.uuid4()), memory_mib=128, vcpus=1, disks=specs, nics=(NicSpec(network="default"),)
    )
    summary = virt.define_domain(TARGET, build_domain_xml(spec))
    reconcile(host)
    vm = VirtualMachine.objects.get(uuid=summary.uuid)
    vm.owner = owner
    vm.save(update_fields=["owner"])
    return vm


def pool_paths() -> set[str]:
    return {v.path for v in volumes.host_volumes(TARGET) if v.path}


def disk_path(vm: VirtualMachine, index: int = 0) -> str:
    return f"/{POOL}/{domain_devices(vm.xml).disks[index].source_volume}"


# --- templates --------------------------------------------------------------------------------------------------


def test_owner_marks_a_shut_off_vm_as_template_and_it_is_listed(lab, alice, bob):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    vm_set_template(actor=actor_of(alice), vm=vm, template=True)
    assert list(visible_templates(alice)) == [vm]
    assert list(visible_templates(bob)) == []  # not a member of the host
    client = Client()
    client.login(username="alice", password=PASSWORD)
    page = client.get("/vms/templates/")
    assert page.status_code == 200 and vm.name in page.content.decode()
    assert AuditEvent.objects.filter(action="vm.template-on", outcome="succeeded").count() == 1


def test_a_running_vm_cannot_become_a_template(lab, alice):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    virt.start_domain(TARGET, str(vm.uuid))
    reconcile(lab)
    vm.refresh_from_db()
    with pytest.raises(Conflict, match="Shut it down first"):
        vm_set_template(actor=actor_of(alice), vm=vm, template=True)
    assert not VirtualMachine.objects.get(pk=vm.pk).is_template


def test_template_page_endpoint_checks_the_owner(lab, alice, bob):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    other = Client()
    other.login(username="bob", password=PASSWORD)
    assert other.post(f"/vms/{vm.uuid}/template/", {"template": "on"}).status_code == 404
    assert Client().post(f"/vms/{vm.uuid}/template/", {"template": "on"}).status_code == 302  # to the login page
    owner = Client()
    owner.login(username="alice", password=PASSWORD)
    assert owner.post(f"/vms/{vm.uuid}/template/", {"template": "on"}).status_code == 302
    assert VirtualMachine.objects.get(pk=vm.pk).is_template


@pytest.mark.parametrize("mode", ["linked", "full"])
def test_create_from_a_template(lab, alice, queued, mode):  # type: ignore[no-untyped-def]
    template = make_guest(lab, alice)
    vm_set_template(actor=actor_of(alice), vm=template, template=True)
    body = {
        "name": f"from-{mode}",
        "host": lab.pk,
        "vcpus": 1,
        "memory_mib": 128,
        "source": {"type": "template", "template": str(template.uuid), "clone": mode},
    }
    op = run(vm_create(actor=actor_of(alice), data=body))
    assert op.status == "succeeded", op.error
    new = VirtualMachine.objects.get(name=f"from-{mode}")
    [disk] = domain_devices(virt.get_domain_xml(TARGET, str(new.uuid))).disks
    copy = volumes.volume_by_path(TARGET, f"/{POOL}/{disk.source_volume}")
    assert copy is not None and disk.source_volume == f"from-{mode}-disk0.qcow2"
    assert copy.backing_path == (disk_path(template) if mode == "linked" else None)


# --- clone ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["linked", "full"])
def test_clone_makes_a_new_vm_with_new_identity_and_disks(lab, alice, queued, mode):  # type: ignore[no-untyped-def]
    source = make_guest(lab, alice, disks=2)
    op = run(vm_action(actor=actor_of(alice), vm=source, action="clone", params={"name": f"copy-{mode}", "mode": mode}))
    assert op.status == "succeeded", op.error
    clone = VirtualMachine.objects.get(name=f"copy-{mode}")
    assert clone.owner == alice and clone.uuid != source.uuid
    old, new = domain_devices(source.xml), domain_devices(virt.get_domain_xml(TARGET, str(clone.uuid)))
    assert [d.source_path for d in new.disks] == [
        f"/{POOL}/copy-{mode}-disk0.qcow2",
        f"/{POOL}/copy-{mode}-disk1.qcow2",
    ]
    assert {n.mac for n in new.nics}.isdisjoint({n.mac for n in old.nics})
    backing = volumes.volume_by_path(TARGET, new.disks[0].source_path or "")
    assert backing is not None and backing.backing_path == (disk_path(source) if mode == "linked" else None)


def test_clone_refusals(lab, alice, bob, queued):  # type: ignore[no-untyped-def]
    source = make_guest(lab, alice)
    with pytest.raises(Invalid, match="not a valid VM name"):
        vm_action(actor=actor_of(alice), vm=source, action="clone", params={"name": "../x"})
    with pytest.raises(Invalid, match="already has a VM named"):
        vm_action(actor=actor_of(alice), vm=source, action="clone", params={"name": source.name})
    virt.start_domain(TARGET, str(source.uuid))
    reconcile(lab)
    source.refresh_from_db()
    with pytest.raises(Conflict, match="Shut it down first"):
        vm_action(actor=actor_of(alice), vm=source, action="clone", params={"name": "ok"})
    assert queued == []


def test_a_failed_clone_leaves_nothing(lab, alice, queued):  # type: ignore[no-untyped-def]
    source = make_guest(lab, alice, disks=2)
    # The second copy's name is taken: the first copy is made, then removed again.
    volumes.create_volume(TARGET, POOL, VolumeSpec(name="twin-disk1.qcow2", capacity_bytes=1 << 20))
    before = pool_paths()
    op = run(vm_action(actor=actor_of(alice), vm=source, action="clone", params={"name": "twin", "mode": "full"}))
    assert op.status == "failed" and op.error.startswith(f"Cloning {source.name} failed while copying")
    assert pool_paths() == before
    assert not [d for d in virt.list_domains(TARGET) if d.name == "twin"]


# --- delete -----------------------------------------------------------------------------------------------------


def test_delete_keeping_disks_removes_only_the_definition(lab, alice, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    path = disk_path(vm)
    op = run(vm_action(actor=actor_of(alice), vm=vm, action="delete", params={"disks": "keep", "confirm": vm.name}))
    assert op.status == "succeeded", op.error
    assert str(vm.uuid) not in {d.uuid for d in virt.list_domains(TARGET)}
    assert path in pool_paths() and op.result == {"deleted": [], "kept": []}
    assert VirtualMachine.objects.get(pk=vm.pk).state == "gone"


def test_delete_with_disks_keeps_a_disk_that_backs_another_and_says_why(lab, alice, queued):  # type: ignore[no-untyped-def]
    base = make_guest(lab, alice, disks=2)
    base_disk, own_disk = disk_path(base, 0), disk_path(base, 1)
    child = make_guest(lab, alice, backing=base_disk)
    op = run(
        vm_action(actor=actor_of(alice), vm=base, action="delete", params={"disks": "delete", "confirm": base.name})
    )
    assert op.status == "succeeded", op.error
    assert op.result["deleted"] == [own_disk]
    [kept] = op.result["kept"]
    assert kept["path"] == base_disk and kept["reason"] == f"it is the backing file of {child.name}-d0.qcow2."
    assert base_disk in pool_paths() and own_disk not in pool_paths()


def test_delete_with_disks_keeps_a_disk_another_vm_uses(lab, alice, queued):  # type: ignore[no-untyped-def]
    first = make_guest(lab, alice)
    shared = disk_path(first)
    spec = DomainSpec(
        name=f"sharer-{uuid.uuid4().hex[:6]}", memory_mib=64, vcpus=1, disks=[DiskSpec(source_file=shared)]
    )
    virt.define_domain(TARGET, build_domain_xml(spec))
    op = run(
        vm_action(actor=actor_of(alice), vm=first, action="delete", params={"disks": "delete", "confirm": first.name})
    )
    assert op.result["kept"] == [{"path": shared, "reason": f"VM {spec.name} also uses it."}]
    assert shared in pool_paths()


def test_delete_needs_the_name_typed_and_a_stopped_vm(lab, alice, bob, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    with pytest.raises(Invalid, match=f"Type the VM's name, {vm.name}"):
        vm_action(actor=actor_of(alice), vm=vm, action="delete", params={"disks": "delete", "confirm": "other"})
    virt.start_domain(TARGET, str(vm.uuid))
    reconcile(lab)
    vm.refresh_from_db()
    with pytest.raises(Conflict, match=r"is running\. Shut it down or force it off first"):
        vm_action(actor=actor_of(alice), vm=vm, action="delete", params={"confirm": vm.name})
    assert queued == []


def test_delete_through_the_api_for_owner_other_and_anonymous(lab, alice, bob, queued):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    url = f"/api/v1/vms/{vm.uuid}/actions/delete/"
    body = {"disks": "keep", "confirm": vm.name}
    assert Client().post(url, body, content_type="application/json").status_code in (401, 403)
    other = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=bob).key}")
    assert other.post(url, body, content_type="application/json").status_code == 404
    owner = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    response = owner.post(url, body, content_type="application/json")
    assert response.status_code == 202 and response.json()["operation"]["kind"] == "vm.delete"


# --- ownership --------------------------------------------------------------------------------------------------


def test_only_administrators_reassign_and_it_is_audited(lab, alice, bob, ada):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    owner = Client()
    owner.login(username="alice", password=PASSWORD)
    assert owner.post(f"/vms/{vm.uuid}/owner/", {"owner": "bob"}).status_code == 403
    admin = Client()
    admin.login(username="ada", password=PASSWORD)
    assert admin.post(f"/vms/{vm.uuid}/owner/", {"owner": "bob"}).status_code == 302
    assert VirtualMachine.objects.get(pk=vm.pk).owner == bob
    event = AuditEvent.objects.get(action="vm.reassign", outcome="succeeded")
    assert event.message == "From alice to bob."
    assert AuditEvent.objects.filter(action="vm.reassign", outcome="denied").count() == 1
    # alice no longer owns it, so she no longer sees it.
    assert owner.get(f"/vms/{vm.uuid}/").status_code == 404


def test_reassigning_to_an_unknown_user_is_refused(lab, alice, ada):  # type: ignore[no-untyped-def]
    vm = make_guest(lab, alice)
    admin = Client()
    admin.login(username="ada", password=PASSWORD)
    admin.post(f"/vms/{vm.uuid}/owner/", {"owner": "nobody-here"})
    assert VirtualMachine.objects.get(pk=vm.pk).owner == alice
    with pytest.raises(Conflict):
        vm_reassign(actor=actor_of(ada), vm=vm, owner=alice)
