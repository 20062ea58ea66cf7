"""The hardware editor: each action's check, its handler on libvirt's test driver, access, and the Hardware tab.

alice owns the VMs, bob owns none of them, ada administers. VM rows come from the test driver through
the real reconcile; effects are checked in libvirt itself. The test driver has no device hotplug,
so attaching a disk there fails, which is how the all-or-nothing cleanup of a new volume is shown.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.errors import Conflict, Invalid
from kvmweb.operations.models import Operation
from kvmweb.virt import volumes
from kvmweb.virt.xml import DiskSpec, DomainSpec, NicSpec, build_domain_xml, domain_devices
from storage.models import StoragePool, Volume
from tests.factories import make_host
from tests.runs import actor_of, run
from vms.actions import ACTIONS, vm_action
from vms.models import VirtualMachine

TEST_URI = "test:///default"
TARGET = virt.HostTarget(TEST_URI)
POOL = "default-pool"
MakeDomain = Callable[..., VirtualMachine]


@pytest.fixture
def lab(alice):  # type: ignore[no-untyped-def]
    return make_host(
        "testhost", uri=TEST_URI, members=(alice,), capabilities={"cpus": 16, "memory_kib": 8 * 1024 * 1024}
    )


@pytest.fixture
def domain(lab, alice) -> Iterator[MakeDomain]:  # type: ignore[no-untyped-def]
    """A domain on the test driver with disk vda, CD-ROM sda and one NIC; reconciled, and alice's."""
    created: list[str] = []

    def make(*, running: bool = True, owner: Any = alice) -> VirtualMachine:
        name = f"edit-{uuid.uuid4().hex[:10]}"
        spec = DomainSpec(
            name=name,
            uuid=str(uuid.uuid4()),
            memory_mib=256,
            vcpus=1,
            disks=(
                DiskSpec(source_file=f"/{POOL}/{name}.qcow2", target_dev="vda"),
                DiskSpec(device="cdrom", target_dev="sda", bus="sata", readonly=True),
            ),
            nics=(NicSpec(network="default", mac="52:54:00:aa:bb:01"),),
        )
        summary = virt.define_domain(TARGET, build_domain_xml(spec))
        created.append(summary.uuid)
        if running:
            virt.start_domain(TARGET, summary.uuid)
        host_reconcile(host=lab, inventory=virt.get_inventory(TARGET))
        vm = VirtualMachine.objects.select_related("host").get(uuid=summary.uuid)
        vm.owner = owner
        vm.save(update_fields=["owner"])
        return vm

    yield make
    for domain_uuid in created:
        try:
            if virt.domain_state(TARGET, domain_uuid).state != "shutoff":
                virt.destroy_domain(TARGET, domain_uuid)
            virt.undefine_domain(TARGET, domain_uuid)
        except virt.NotFound:
            pass
    virt.close_all()


def act(vm: VirtualMachine, action: str, user: Any, **params: Any) -> Operation:
    return run(vm_action(actor=actor_of(user), vm=vm, action=action, params=params))


def row(vm: VirtualMachine) -> VirtualMachine:
    return VirtualMachine.objects.get(pk=vm.pk)


def config_xml(vm: VirtualMachine) -> str:
    return virt.get_domain_xml(TARGET, str(vm.uuid), inactive=True)


def iso_volume(lab: Any, name: str = "installer.iso") -> Volume:
    pool = StoragePool.objects.get(host=lab, name=POOL)
    return Volume.objects.create(
        pool=pool, name=name, key=f"/{POOL}/{name}", path=f"/{POOL}/{name}", format="iso", capacity=2**30
    )


# --- checks: bad input is refused before libvirt, with a message per field, and nothing changes -------------------

BAD = [
    ("set-resources", {"vcpus": 0}, "vcpus"),
    ("set-resources", {"vcpus": -2}, "vcpus"),
    ("set-resources", {"vcpus": "four"}, "vcpus"),
    ("set-resources", {"vcpus": True}, "vcpus"),
    ("set-resources", {"vcpus": 17}, "vcpus"),  # the host has 16 CPUs
    ("set-resources", {"memory_mib": 0}, "memory_mib"),
    ("set-resources", {"memory_mib": -512}, "memory_mib"),
    ("set-resources", {"memory_mib": "1.5"}, "memory_mib"),
    ("set-resources", {"memory_mib": 10**9}, "memory_mib"),  # more than the host has
    ("set-resources", {}, "vcpus"),
    ("set-resources", {"vcpus": 1, "memory_mib": 256}, "vcpus"),  # nothing to change
    ("set-resources", {"cores": 2}, "cores"),
    ("attach-disk", {"pool": POOL, "size_mib": 0}, "size"),
    ("attach-disk", {"pool": POOL, "size_mib": -8}, "size"),
    ("attach-disk", {"pool": POOL, "size_mib": 10**12}, "size"),
    ("attach-disk", {"pool": POOL, "size_gib": "nan"}, "size"),
    ("attach-disk", {"pool": POOL, "size_gib": "1e400"}, "size"),
    ("attach-disk", {"pool": POOL}, "size"),
    ("attach-disk", {"pool": "nowhere", "size_mib": 8}, "pool"),
    ("attach-disk", {"pool": POOL, "size_mib": 8, "format": "vmdk"}, "format"),
    ("attach-disk", {"pool": POOL, "size_mib": 8, "allocation": "sparse"}, "allocation"),
    ("attach-disk", {"pool": POOL, "size_mib": 8, "bus": "usb"}, "bus"),
    ("attach-disk", {"pool": POOL, "size_mib": 8, "target": "vda"}, "target"),
    ("attach-disk", {"pool": POOL, "size_mib": 8, "target": "sdb"}, "target"),  # not a virtio name
    ("attach-disk", {"pool": POOL, "size_mib": 8, "name": "../etc/passwd"}, "name"),
    ("attach-disk", {"source": "existing", "volume": 999999}, "volume"),
    ("attach-disk", {"source": "nfs"}, "source"),
    ("detach-disk", {"target": "vdz"}, "target"),
    ("detach-disk", {}, "target"),
    ("resize-disk", {"target": "vdz", "size_mib": 100}, "target"),
    ("resize-disk", {"target": "sda", "size_mib": 100}, "target"),  # a CD-ROM
    ("resize-disk", {"target": "vda", "size_mib": 0}, "size"),
    ("resize-disk", {"target": "vda", "size_gib": "-1"}, "size"),
    ("change-media", {"target": "vda", "volume": "1"}, "target"),  # not a CD-ROM
    ("change-media", {"target": "sda", "volume": "999999"}, "volume"),
    ("change-media", {"target": "sda"}, "target"),  # already empty
    ("attach-nic", {"network": "nope"}, "network"),
    ("attach-nic", {"network": "default", "model": "ne2k_pci"}, "model"),
    ("detach-nic", {"mac": "52:54:00:00:00:99"}, "mac"),
    ("set-boot-order", {"order": "floppy"}, "order"),
    ("set-boot-order", {"order": ["hd", "hd"]}, "order"),
    ("set-boot-order", {"order": []}, "order"),
    ("describe", {"title": "two\nlines"}, "title"),
    ("describe", {"description": "x" * 5000}, "description"),
    ("describe", {"description": 5}, "description"),
    ("describe", {"tags": "has space, ok"}, "tags"),
    ("describe", {"tags": [f"t{i}" for i in range(17)]}, "tags"),
    ("describe", {}, "title"),
]


@pytest.mark.parametrize(("action", "params", "field"), BAD, ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(BAD)])
def test_bad_input_is_refused_before_libvirt_and_changes_nothing(queued, domain, alice, action, params, field):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    before = config_xml(vm)
    with pytest.raises(Invalid) as refused:
        vm_action(actor=actor_of(alice), vm=vm, action=action, params=params)
    assert field in refused.value.details, refused.value.details
    assert refused.value.message and "Traceback" not in refused.value.message
    assert not Operation.objects.exists()
    assert config_xml(vm) == before
    assert (row(vm).name, row(vm).tags, row(vm).pending) == (vm.name, [], {})


def test_a_disk_only_grows(queued, domain, alice, lab):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    pool = StoragePool.objects.get(host=lab, name=POOL)
    Volume.objects.create(
        pool=pool, name=f"{vm.name}.qcow2", key="k", path=f"/{POOL}/{vm.name}.qcow2", format="qcow2", capacity=2 * 2**30
    )
    with pytest.raises(Invalid) as refused:
        vm_action(actor=actor_of(alice), vm=vm, action="resize-disk", params={"target": "vda", "size_gib": "1"})
    assert (
        refused.value.message
        == "vda is 2048 MiB; choose a larger size (disks only grow: shrinking would cut off the guest's data)."
    )
    op = vm_action(actor=actor_of(alice), vm=vm, action="resize-disk", params={"target": "vda", "size_gib": "2.5"})
    assert op.params == {"target": "vda", "size_mib": 2560}


def test_an_existing_volume_used_by_a_vm_or_an_iso_is_not_offered_as_a_disk(queued, domain, alice, lab):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    other = domain(running=False)
    pool = StoragePool.objects.get(host=lab, name=POOL)
    taken = Volume.objects.create(
        pool=pool, name=f"{other.name}.qcow2", key="a", path=f"/{POOL}/{other.name}.qcow2", format="qcow2"
    )
    iso = iso_volume(lab)
    for volume in (taken, iso):
        with pytest.raises(Invalid) as refused:
            vm_action(
                actor=actor_of(alice), vm=vm, action="attach-disk", params={"source": "existing", "volume": volume.pk}
            )
        assert "volume" in refused.value.details
    free = Volume.objects.create(pool=pool, name="spare.raw", key="b", path=f"/{POOL}/spare.raw", format="raw")
    op = vm_action(
        actor=actor_of(alice), vm=vm, action="attach-disk", params={"source": "existing", "volume": str(free.pk)}
    )
    assert op.params == {
        "source": "existing",
        "bus": "virtio",
        "target": "vdb",
        "path": f"/{POOL}/spare.raw",
        "format": "raw",
        "volume": "spare.raw",
        "pool": POOL,
    }


def test_rename_checks_the_vm_name_rule_and_the_host(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm, other = domain(running=False), domain(running=False)
    for name, message in (
        ("bad name!", "'bad name!' is not a valid VM name."),
        ("-lead", "'-lead' is not a valid VM name."),
        ("x" * 65, "is not a valid VM name."),
        (other.name, f"testhost already has a VM named {other.name}."),
        (vm.name, f"{vm.name} already has that name."),
    ):
        with pytest.raises(Invalid, match=message[:30].replace("(", r"\(").replace("!", "!")):
            vm_action(actor=actor_of(alice), vm=vm, action="rename", params={"name": name})
    assert not Operation.objects.exists()


def test_rename_of_a_running_vm_is_refused_with_the_reason(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    with pytest.raises(Conflict) as refused:
        vm_action(actor=actor_of(alice), vm=vm, action="rename", params={"name": "fresh"})
    assert (
        refused.value.message
        == f"Cannot rename: {vm.name} is running; libvirt renames only a shut-off VM. Shut it down first."
    )
    assert virt.get_domain(TARGET, str(vm.uuid)).name == vm.name


def test_hardware_actions_stay_out_of_the_power_bar(domain) -> None:  # type: ignore[no-untyped-def]
    hardware = {name for name, spec in ACTIONS.items() if spec.group == "hardware"}
    assert hardware == {
        "set-resources", "attach-disk", "detach-disk", "resize-disk", "change-media",
        "attach-nic", "update-nic", "detach-nic", "set-boot-order", "rename", "describe",
    }  # fmt: skip


# --- handlers on the test driver ---------------------------------------------------------------------------------


def test_resources_of_a_shut_off_vm_change_for_next_boot_without_pending(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    op = act(vm, "set-resources", alice, vcpus="2", memory_mib="512")
    assert op.status == "succeeded", (op.error, op.error_detail)
    record = virt.get_domain(TARGET, str(vm.uuid))
    assert (record.vcpus, record.memory_kib) == (2, 512 * 1024)
    assert (row(vm).vcpus, row(vm).memory_kib, row(vm).pending) == (2, 512 * 1024, {})
    assert op.result["vcpus"] == {
        "value": 2,
        "live": False,
        "config": True,
        "note": "Saved; the VM is shut off, so it takes effect when it next starts.",
    }
    assert op.result["note"].startswith("vCPUs: Saved;")


def test_memory_of_a_running_vm_is_ballooned_now(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    op = act(vm, "set-resources", alice, memory_mib=128)
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert virt.get_domain_record(TARGET, str(vm.uuid)).memory_kib == 128 * 1024
    assert row(vm).memory_kib == 128 * 1024 and row(vm).pending == {}
    assert op.result["memory_mib"] == {
        "value": 128,
        "live": True,
        "config": True,
        "note": "Applied now and kept for next boot.",
    }


def test_vcpus_above_a_running_vms_maximum_are_pending_until_it_shuts_off(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    op = act(vm, "set-resources", alice, vcpus=4)
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert op.result["vcpus"]["live"] is False
    assert "exceeds its maximum of 1" in op.result["note"]
    assert row(vm).pending == {"vcpus": 4}
    assert row(vm).vcpus == 1  # the running guest keeps what it has
    assert virt.get_domain_xml(TARGET, str(vm.uuid), inactive=True).count("<vcpu") == 1
    assert virt.get_domain(TARGET, str(vm.uuid)).vcpus == 1  # live

    page = _client(alice).get(f"/vms/{vm.uuid}/")
    assert b"Pending at next boot" in page.content and b"4 vCPUs" in page.content

    # Asking for the same again is nothing to change; shutting it off makes the change real.
    with pytest.raises(Invalid, match="nothing to change"):
        vm_action(actor=actor_of(alice), vm=row(vm), action="set-resources", params={"vcpus": 4})
    assert act(row(vm), "force-off", alice).status == "succeeded"
    assert row(vm).pending == {}


def test_describe_writes_libvirt_metadata_and_keeps_tags_on_the_row(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    op = act(vm, "describe", alice, title="Web front", description="Serves\nthe site", tags="web, prod, web")
    assert op.status == "succeeded", (op.error, op.error_detail)
    record = virt.get_domain_record(TARGET, str(vm.uuid))
    assert (record.title, record.description) == ("Web front", "Serves\nthe site")
    fresh = row(vm)
    assert (fresh.title, fresh.description, fresh.tags) == ("Web front", "Serves\nthe site", ["web", "prod"])
    assert "<title>Web front</title>" in config_xml(vm)


def test_an_emptied_page_field_clears_it(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    assert act(vm, "describe", alice, title="Old", tags="a").status == "succeeded"
    # The page drops empty fields; `fields` says the form carried them.
    op = vm_action(
        actor=actor_of(alice), vm=row(vm), action="describe", params={"fields": "title,description,tags", "tags": "a"}
    )
    assert op.params == {"title": ""}
    assert run(op).status == "succeeded"
    assert (row(vm).title, row(vm).tags) == ("", ["a"])


def test_rename_a_shut_off_vm(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    new = f"renamed-{uuid.uuid4().hex[:6]}"
    op = act(vm, "rename", alice, name=new)
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert virt.get_domain(TARGET, str(vm.uuid)).name == new and row(vm).name == new


def test_boot_order_goes_to_the_definition(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    op = act(vm, "set-boot-order", alice, boot1="cdrom", boot2="hd", boot3="")
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert domain_devices(config_xml(vm)).boot == ("cdrom", "hd")
    assert row(vm).pending == {}


def test_boot_order_of_a_running_vm_is_pending(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    assert act(vm, "set-boot-order", alice, order="network,hd").status == "succeeded"
    assert domain_devices(config_xml(vm)).boot == ("network", "hd")
    assert row(vm).pending == {"boot": ["network", "hd"]}


def test_a_new_disk_that_cannot_be_attached_leaves_no_volume_behind(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    op = act(vm, "attach-disk", alice, pool=POOL, size_mib=8, format="raw")
    # The test driver cannot attach devices: the attach fails after the volume was made.
    assert op.status == "failed"
    assert f"The new volume /{POOL}/{vm.name}-vdb.raw was deleted again." in op.error
    assert volumes.volume_by_path(TARGET, f"/{POOL}/{vm.name}-vdb.raw") is None
    assert [disk.target_dev for disk in domain_devices(config_xml(vm)).disks] == ["vda", "sda"]
    assert not Volume.objects.filter(name=f"{vm.name}-vdb.raw").exists()


def test_media_change_reaches_the_adapter_with_the_iso_path(queued, domain, alice, lab, monkeypatch):  # type: ignore[no-untyped-def]
    from kvmweb.virt import devices

    calls: list[tuple[str, str | None]] = []

    def change_media(target: Any, uuid: str, dev: str, path: str | None) -> devices.Applied:
        calls.append((dev, path))
        return devices.Applied(live=False, config=True, note=devices.NEXT_BOOT)

    monkeypatch.setattr(devices, "change_media", change_media)
    vm = domain(running=False)
    iso = iso_volume(lab)
    op = act(vm, "change-media", alice, target="sda", volume=str(iso.pk))
    assert op.status == "succeeded" and calls == [("sda", iso.path)]
    assert op.result == {"target": "sda", "path": iso.path, "live": False, "config": True, "note": devices.NEXT_BOOT}


# --- access: API and page ----------------------------------------------------------------------------------------


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _api(user: Any) -> Client:
    if user is None:
        return Client()
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")


def test_api_owner_queues_an_edit_and_gets_the_clean_params(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    response = _api(alice).post(
        f"/api/v1/vms/{vm.uuid}/actions/attach-nic/",
        {"network": "default", "model": "e1000"},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    op = Operation.objects.get()
    mac = op.params["mac"]  # a new one, unique on the host
    assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", mac)
    assert (op.kind, op.params) == (
        "vm.attach-nic",
        {"network": "default", "portgroup": None, "model": "e1000", "mac": mac, "link": "up", "bandwidth": None},
    )


def test_api_bad_input_is_400_with_field_details(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    response = _api(alice).post(
        f"/api/v1/vms/{vm.uuid}/actions/set-resources/", {"memory_mib": -1}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "Memory is a whole number of MiB from 16 to 8192 (testhost has 8192 MiB in all).",
            "details": {
                "memory_mib": "Memory is a whole number of MiB from 16 to 8192 (testhost has 8192 MiB in all)."
            },
        }
    }
    assert not Operation.objects.exists()


def test_api_other_user_gets_404_and_anonymous_401(queued, domain, bob):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    for user, status in ((bob, 404), (None, 401)):
        response = _api(user).post(
            f"/api/v1/vms/{vm.uuid}/actions/rename/", {"name": "stolen"}, content_type="application/json"
        )
        assert response.status_code == status
    assert not Operation.objects.exists()
    assert virt.get_domain(TARGET, str(vm.uuid)).name == vm.name


def test_api_admin_may_edit_anyones_vm(queued, domain, ada):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    response = _api(ada).post(
        f"/api/v1/vms/{vm.uuid}/actions/describe/", {"tags": ["db"]}, content_type="application/json"
    )
    assert response.status_code == 202, response.content


def test_page_owner_posts_and_comes_back_to_the_tab(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    response = _client(alice).post(
        f"/vms/{vm.uuid}/actions/detach-nic/",
        {"mac": "52:54:00:AA:BB:01", "confirm": "yes", "next": f"/vms/{vm.uuid}/#hardware"},
    )
    assert response.status_code == 302 and response["Location"] == f"/vms/{vm.uuid}/#hardware"
    assert Operation.objects.get().params == {"mac": "52:54:00:aa:bb:01"}


def test_page_refusal_comes_back_as_a_message(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    response = _client(alice).post(
        f"/vms/{vm.uuid}/actions/resize-disk/", {"target": "vda", "size_gib": "0"}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["The size is from 1 MiB to 64 TiB."]
    assert not Operation.objects.exists()


def test_page_other_user_gets_404_and_anonymous_goes_to_login(queued, domain, bob):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    assert _client(bob).post(f"/vms/{vm.uuid}/actions/rename/", {"name": "stolen"}).status_code == 404
    anonymous = Client().post(f"/vms/{vm.uuid}/actions/rename/", {"name": "stolen"})
    assert anonymous.status_code == 302 and "/login" in anonymous["Location"]
    assert not Operation.objects.exists()


# --- the Hardware tab --------------------------------------------------------------------------------------------


def test_hardware_tab_renders_from_the_database_only(queued, domain, alice, lab, no_libvirt):  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    iso_volume(lab)
    with no_libvirt():
        page = _client(alice).get(f"/vms/{vm.uuid}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="tab-hardware"' in html and 'data-hash="hardware"' in html
    assert 'data-disk="vda"' in html and 'data-disk="sda"' in html and 'data-nic="52:54:00:aa:bb:01"' in html
    assert f"/vms/{vm.uuid}/actions/attach-disk/" in html and f"/vms/{vm.uuid}/actions/set-boot-order/" in html
    assert f"Detach vda from {vm.name}?" in html  # the confirmation names the disk and the VM
    assert f"Remove the NIC 52:54:00:aa:bb:01 (default) from {vm.name}?" in html
    assert "installer.iso" in html
    # Rename is shown, disabled, with the reason.
    assert f"{vm.name} is running; libvirt renames only a shut-off VM." in html


def test_vm_pages_and_each_tabs_fetch_render_from_the_database_only(queued, domain, lab, alice, ada, no_libvirt):  # type: ignore[no-untyped-def]
    """ARCHITECTURE.md: a page or API read never calls libvirt. Every VM page, as its owner and as an administrator."""
    vm = domain(running=True)
    template = domain(running=False)
    VirtualMachine.objects.filter(pk=template.pk).update(is_template=True)
    iso_volume(lab)
    pages = ["/vms/", f"/vms/{vm.uuid}/", f"/vms/{vm.uuid}/log/", "/vms/new/", "/vms/templates/"]
    reads = [
        "/api/v1/vms/",
        f"/api/v1/vms/{vm.uuid}/",
        f"/api/v1/vms/{vm.uuid}/xml/",
        f"/api/v1/vms/{vm.uuid}/xml/?inactive=1",
        f"/api/v1/stats/vm/{vm.uuid}/?range=1h",  # the Graphs tab's source
    ]

    with no_libvirt():
        answers = {
            (user.username, url): (_client(user) if url in pages else _api(user)).get(url)
            for user in (alice, ada)
            for url in (*pages, *reads)
        }
        answers["ada", "editor"] = _client(ada).get(f"/vms/{vm.uuid}/xml/")

    assert {key: answer.status_code for key, answer in answers.items()} == {key: 200 for key in answers}
    assert vm.name in answers["alice", "/vms/"].content.decode()
    assert template.name in answers["alice", "/vms/templates/"].content.decode()
    assert 'id="tab-snapshots"' in answers["ada", f"/vms/{vm.uuid}/"].content.decode()


def test_hardware_tab_has_no_forms_for_a_viewer_who_cannot_act(queued, domain, alice, monkeypatch):  # type: ignore[no-untyped-def]
    from kvmweb import access

    vm = domain(running=False)
    monkeypatch.setattr(access, "can_act", lambda user, obj=None: False)
    html = _client(alice).get(f"/vms/{vm.uuid}/").content.decode()
    assert 'id="tab-hardware"' in html
    assert f"/vms/{vm.uuid}/actions/attach-disk/" not in html
    assert "Only the VM's owner or an administrator can change its hardware" in html
