"""Provisioning for real: API → Redis → a Celery worker → libvirtd in the lab.

A VM is created from the tiny guest's kernel with a new qcow2 disk, boots, shuts down by ACPI;
a linked clone of it boots; deleting with disks removes exactly the right volumes; a failure in
the middle of a create leaves nothing; and a cloud-init seed ISO is built and uploaded to the pool.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pycdlib
import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from hosts.models import Host
from kvmweb import virt
from kvmweb.operations.models import Operation
from kvmweb.virt import volumes
from storage.models import StoragePool, Volume
from tests.factories import make_user
from tests.lab.guests import BOOT_DIR, POOL, Guest, remove_guest, unique_guest_name
from tests.lab.hosts import LabHost
from tests.lab.virsh import virsh
from tests.stack import wait_until
from vms.models import VirtualMachine

pytestmark = pytest.mark.integration
POOL_DIR = "/var/lib/libvirt/images/kvmweb-lab"


@pytest.fixture
def names(lab_host: LabHost) -> Iterator[list[str]]:
    """Guest names this test uses; their domains and volumes are removed afterwards."""
    used: list[str] = []
    yield used
    for name in used:
        remove_guest(lab_host, name, delete_volume=False)
        for volume in volumes.host_volumes(lab_host.target):
            if volume.name.startswith(f"{name}-") and volume.path:
                volumes.delete_volume(lab_host.target, volume.path)


@pytest.fixture
def setup(worker, lab_host, transactional_db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ada = make_user("ada", admin=True)
    host = Host.objects.create(name="lab", uri=lab_host.uri, state=Host.State.CONNECTED)
    refresh(host)
    host.capabilities = {"virt_types": ["qemu"], "arch": "x86_64", "cpus": 2, "memory_kib": 4 << 20}
    host.save(update_fields=["capabilities"])
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    return {"api": api, "host": host, "lab": lab_host, "log": worker}


def refresh(host: Host) -> None:
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))


def finish(setup: dict[str, Any], response: Any, timeout: float = 180) -> Operation:
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]
    wait_until(
        lambda: Operation.objects.get(pk=op_id).status in ("succeeded", "failed"),
        timeout=timeout,
        what=f"operation {op_id}",
        log=setup["log"],
    )
    return Operation.objects.get(pk=op_id)


def create(setup: dict[str, Any], name: str, **overrides: Any) -> Operation:
    pool = StoragePool.objects.get(host=setup["host"], name=POOL)
    body = {
        "name": name,
        "host": setup["host"].pk,
        "vcpus": 1,
        "memory_mib": 192,
        "virt_type": "qemu",
        "source": {
            "type": "kernel",
            "kernel": f"{BOOT_DIR}/vmlinuz",
            "initrd": f"{BOOT_DIR}/initrd.gz",
            "cmdline": f"console=tty0 console=ttyS0,115200 kvmweb.name={name}",
        },
        "disks": [{"pool": pool.pk, "size_mib": 64, "format": "qcow2", "allocation": "thin"}],
        **overrides,
    }
    return finish(setup, setup["api"].post("/api/v1/vms/", body, content_type="application/json"))


def act(setup: dict[str, Any], vm: str, action: str, **params: Any) -> Operation:
    url = f"/api/v1/vms/{vm}/actions/{action}/"
    return finish(setup, setup["api"].post(url, params, content_type="application/json"))


def pool_files() -> set[str]:
    return {path.name for path in Path(POOL_DIR).iterdir()}


def guest(setup: dict[str, Any], name: str) -> Guest:
    vm = VirtualMachine.objects.get(name=name, host=setup["host"])
    return Guest(setup["lab"], name, str(vm.uuid), data_disk=False)


def test_create_from_kernel_and_new_qcow2_disk_boots_and_shuts_down(setup, names) -> None:  # type: ignore[no-untyped-def]
    name = unique_guest_name("create")
    names.append(name)
    op = create(setup, name, start=True)
    assert op.status == "succeeded", (op.error, op.log)
    assert f"{name}-disk0.qcow2" in pool_files()
    info = virsh(setup["lab"].uri, "vol-dumpxml", "--pool", POOL, f"{name}-disk0.qcow2", timeout=30)
    assert "<format type='qcow2'/>" in info
    made = guest(setup, name)
    made.wait_for_marker(120)
    made.wait_for_agent(60)
    assert VirtualMachine.objects.get(uuid=made.uuid).owner.username == "ada"

    off = act(setup, made.uuid, "shutdown", mode="acpi", timeout=90)
    assert off.status == "succeeded", off.error
    assert virsh(setup["lab"].uri, "domstate", made.uuid, timeout=30).strip() == "shut off"


def test_linked_clone_boots_and_delete_removes_exactly_its_volumes(setup, names) -> None:  # type: ignore[no-untyped-def]
    name, copy = unique_guest_name("orig"), unique_guest_name("clone")
    names.extend([name, copy])
    assert create(setup, name).status == "succeeded"
    original = guest(setup, name)
    cloned = act(setup, original.uuid, "clone", name=copy, mode="linked")
    assert cloned.status == "succeeded", (cloned.error, cloned.log)
    overlay = volumes.volume_by_path(setup["lab"].target, f"{POOL_DIR}/{copy}-disk0.qcow2")
    assert overlay is not None and overlay.backing_path == f"{POOL_DIR}/{name}-disk0.qcow2"

    clone = guest(setup, copy)
    clone.start()
    clone.wait_for_marker(120)  # the clone logs to its own serial file: the path was renamed with it
    clone.destroy()

    # The original's disk backs the clone's overlay: deleting it with its disks keeps that one.
    refresh(setup["host"])
    gone = act(setup, original.uuid, "delete", disks="delete", confirm=name)
    assert gone.status == "succeeded", gone.error
    assert gone.result["deleted"] == []
    assert gone.result["kept"] == [
        {"path": f"{POOL_DIR}/{name}-disk0.qcow2", "reason": f"it is the backing file of {copy}-disk0.qcow2."}
    ]
    before = pool_files()
    removed = act(setup, clone.uuid, "delete", disks="delete", confirm=copy)
    assert removed.result["deleted"] == [f"{POOL_DIR}/{copy}-disk0.qcow2"]
    assert before - pool_files() == {f"{copy}-disk0.qcow2"}
    assert virsh(setup["lab"].uri, "list", "--all", "--name", timeout=30).split().count(copy) == 0


def test_a_failure_in_the_middle_of_a_create_leaves_no_volume_and_no_domain(setup, names) -> None:  # type: ignore[no-untyped-def]
    name = unique_guest_name("broken")
    names.append(name)
    virsh(setup["lab"].uri, "vol-create-as", POOL, f"{name}-disk1.qcow2", "1M", "--format", "qcow2", timeout=30)
    refresh(setup["host"])
    pool = StoragePool.objects.get(host=setup["host"], name=POOL)
    disks = [{"pool": pool.pk, "size_mib": 64}, {"pool": pool.pk, "size_mib": 16}]
    op = create(setup, name, disks=disks)
    assert op.status == "failed"
    assert f"Creating {name} failed while creating disk {name}-disk1.qcow2" in op.error
    assert f"{name}-disk0.qcow2" not in pool_files()
    assert f"{name}-disk1.qcow2" in pool_files()  # it was there before the create
    assert name not in virsh(setup["lab"].uri, "list", "--all", "--name", timeout=30).split()


def test_cloud_image_gets_a_nocloud_seed_uploaded_to_the_pool(setup, names) -> None:  # type: ignore[no-untyped-def]
    name = unique_guest_name("cloud")
    names.append(name)
    virsh(setup["lab"].uri, "vol-create-as", POOL, f"{name}-base.qcow2", "32M", "--format", "qcow2", timeout=30)
    refresh(setup["host"])
    image = Volume.objects.get(pool__host=setup["host"], name=f"{name}-base.qcow2")
    cloud = {"user": "ada", "ssh_keys": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ada@lab", "hostname": "cloudy"}
    source = {"type": "cloud", "image": image.pk, "clone": "linked", "cloud_init": cloud}
    op = create(setup, name, source=source, disks=[])
    assert op.status == "succeeded", (op.error, op.log)
    seed_path = f"{POOL_DIR}/{name}-cidata.iso"
    data = b"".join(volumes.download_volume(setup["lab"].target, seed_path))
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    assert iso.pvd.volume_identifier.decode().strip() == "cidata"
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, rr_path="/user-data")
    assert '"hostname": "cloudy"' in out.getvalue().decode()
    xml = virsh(setup["lab"].uri, "dumpxml", name, timeout=30)
    assert f"{name}-cidata.iso" in xml and f"{name}-disk0.qcow2" in xml
