"""The hardware editor for real: API → Redis → a Celery worker process → libvirtd in the lab → the tiny guest.

The tiny guest is shared by the whole run, so each test puts back what it changed (memory, the vCPU
maximum, the extra disk and its volume).
"""

from __future__ import annotations

import contextlib
import uuid as uuidlib
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from hosts.models import Host
from kvmweb import virt
from kvmweb.operations.models import Operation
from kvmweb.virt.xml import domain_devices
from tests.factories import make_user
from tests.lab.errors import LabError
from tests.lab.guests import MEMORY_MIB, POOL, Guest
from tests.lab.virsh import virsh
from tests.stack import wait_until
from vms.models import VirtualMachine

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(worker, running_tiny_guest, lab_host, transactional_db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ada = make_user("ada", admin=True)
    host = Host.objects.create(name="lab", uri=lab_host.uri, state=Host.State.CONNECTED)
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    page = Client()
    page.force_login(ada)
    return {"api": api, "page": page, "host": host, "guest": running_tiny_guest, "worker_log": worker}


def edit(setup: dict[str, Any], action: str, timeout: float = 120, **params: Any) -> Operation:
    guest: Guest = setup["guest"]
    response = setup["api"].post(f"/api/v1/vms/{guest.uuid}/actions/{action}/", params, content_type="application/json")
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]
    wait_until(
        lambda: Operation.objects.get(pk=op_id).status in ("succeeded", "failed"),
        timeout=timeout,
        what=f"the {action} operation",
        log=setup["worker_log"],
    )
    op = Operation.objects.get(pk=op_id)
    assert op.status == "succeeded", (op.error, op.error_detail, op.log)
    return op


def balloon_kib(guest: Guest) -> int:
    stats = virsh(guest.host.uri, "dommemstat", guest.uuid, timeout=30)
    return int(next(line.split()[1] for line in stats.splitlines() if line.startswith("actual")))


def live_targets(guest: Guest, *flags: str) -> set[str]:
    return {
        disk.target_dev
        for disk in domain_devices(virsh(guest.host.uri, "dumpxml", *flags, guest.uuid, timeout=30)).disks
    }


def test_memory_shrinks_live_through_the_balloon(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    wait_until(
        lambda: balloon_kib(guest) == MEMORY_MIB * 1024, timeout=30, what="the balloon to start at its full size"
    )
    try:
        op = edit(setup, "set-resources", memory_mib=160)

        assert op.result["memory_mib"] == {
            "value": 160,
            "live": True,
            "config": True,
            "note": "Applied now and kept for next boot.",
        }
        wait_until(lambda: balloon_kib(guest) == 160 * 1024, timeout=30, what="the balloon to reach 160 MiB")
        assert VirtualMachine.objects.get(uuid=guest.uuid).pending == {}
    finally:
        with contextlib.suppress(virt.VirtError):
            from kvmweb.virt import devices

            devices.set_memory(guest.host.target, guest.uuid, MEMORY_MIB)


def test_vcpus_above_the_maximum_are_pending_at_next_boot(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    try:
        op = edit(setup, "set-resources", vcpus=2)

        assert op.result["vcpus"]["live"] is False
        assert (
            op.result["vcpus"]["note"]
            == "The VM is running and 2 vCPUs exceeds its maximum of 1: applied at next boot."
        )
        assert virsh(guest.host.uri, "vcpucount", guest.uuid, "--live", "--active", timeout=30).strip() == "1"
        assert virsh(guest.host.uri, "vcpucount", guest.uuid, "--config", "--active", timeout=30).strip() == "2"
        assert VirtualMachine.objects.get(uuid=guest.uuid).pending == {"vcpus": 2}
        page = setup["page"].get(f"/vms/{guest.uuid}/").content.decode()
        assert "Pending at next boot" in page and "→ 2 at next boot" in page
    finally:
        virsh(guest.host.uri, "setvcpus", guest.uuid, "1", "--config", timeout=30)
        virsh(guest.host.uri, "setvcpus", guest.uuid, "1", "--config", "--maximum", timeout=30)


def test_a_new_disk_is_attached_live_and_detached_keeping_its_volume(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    name = f"it-edit-{uuidlib.uuid4().hex[:8]}.qcow2"
    try:
        op = edit(setup, "attach-disk", pool=POOL, size_mib=8, format="qcow2", name=name)

        assert (op.result["target"], op.result["created"], op.result["live"]) == ("vdb", True, True)
        assert "vdb" in live_targets(guest) and "vdb" in live_targets(guest, "--inactive")
        info = virsh(guest.host.uri, "vol-info", name, "--pool", POOL, "--bytes", timeout=30)
        assert int(info.split("Capacity:")[1].split()[0]) == 8 * 1024 * 1024
        page = setup["page"].get(f"/vms/{guest.uuid}/").content.decode()
        assert 'data-disk="vdb"' in page and name in page

        edit(setup, "detach-disk", target="vdb")

        wait_until(lambda: "vdb" not in live_targets(guest), timeout=30, what="vdb to leave the running guest")
        assert "vdb" not in live_targets(guest, "--inactive")
        # Detaching keeps the image: the volume is still in its pool.
        assert name in virsh(guest.host.uri, "vol-list", POOL, timeout=30)
    finally:
        with contextlib.suppress(virt.VirtError):
            from kvmweb.virt import devices

            if "vdb" in live_targets(guest) or "vdb" in live_targets(guest, "--inactive"):
                devices.detach_disk(guest.host.target, guest.uuid, "vdb")
        with contextlib.suppress(LabError):
            virsh(guest.host.uri, "vol-delete", name, "--pool", POOL, timeout=30)
