"""Power and state actions for real: API → Redis → a Celery worker process → libvirtd in the lab → a tiny guest.

The guest is this module's own (``it-actions-p<pid>``), with qemu-ga and ACPI; each test first
brings it back to running with its agent answering, so the tests don't depend on their order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from hosts.models import Host
from kvmweb import virt
from kvmweb.operations.models import Operation
from tests.factories import make_user
from tests.lab.guests import Guest, ensure_guest, remove_guest, unique_guest_name
from tests.lab.hosts import LabHost
from tests.lab.virsh import virsh
from tests.stack import wait_until
from vms.models import VirtualMachine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def guest(lab_host: LabHost) -> Iterator[Guest]:
    name = unique_guest_name("actions")
    remove_guest(lab_host, name)
    made = ensure_guest(lab_host, name, data_disk=False, start=True, wait=True, timeout=90)
    yield made
    remove_guest(lab_host, name)


@pytest.fixture
def setup(worker, guest, lab_host, transactional_db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The guest running with its agent answering, its host and row in kvmweb, and an API client."""
    if guest.state() == "paused":
        virt.resume_domain(lab_host.target, guest.uuid)
    if not guest.is_running():
        guest.start()
        guest.wait_for_marker(90)
    guest.wait_for_agent(60)
    ada = make_user("ada", admin=True)
    host = Host.objects.create(name="lab", uri=lab_host.uri, state=Host.State.CONNECTED)
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    return {"api": api, "host": host, "guest": guest, "worker_log": worker}


def act(setup: dict[str, Any], action: str, timeout: float = 120, **params: Any) -> Operation:
    guest: Guest = setup["guest"]
    response = setup["api"].post(f"/api/v1/vms/{guest.uuid}/actions/{action}/", params, content_type="application/json")
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]

    def finished() -> bool:
        return Operation.objects.get(pk=op_id).status in ("succeeded", "failed")

    wait_until(finished, timeout=timeout, what=f"the {action} operation", log=setup["worker_log"])
    op = Operation.objects.get(pk=op_id)
    assert op.status == "succeeded", (op.error, op.error_detail, op.log)
    return op


def row(guest: Guest) -> VirtualMachine:
    return VirtualMachine.objects.get(uuid=guest.uuid)


def domstate(guest: Guest) -> str:
    return virsh(guest.host.uri, "domstate", guest.uuid, timeout=30).strip()


def test_acpi_shutdown_reaches_shut_off(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    op = act(setup, "shutdown", mode="acpi", timeout=60)

    assert domstate(guest) == "shut off"
    assert row(guest).state == "shutoff"
    assert op.result["mode"] == "acpi" and op.result["state"] == "shutoff"


def test_auto_shutdown_uses_the_agent_when_it_answers(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    assert virt.guest_agent_answers(guest.host.target, guest.uuid) is True
    op = act(setup, "shutdown", timeout=60)

    assert op.result["mode"] == "agent"
    assert domstate(guest) == "shut off" and row(guest).state == "shutoff"
    assert virt.guest_agent_answers(guest.host.target, guest.uuid) is False


def test_managed_save_then_restore_keeps_the_guest_running_on(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    before = guest.uptime()

    act(setup, "save")
    assert domstate(guest) == "shut off"
    saved = row(guest)
    assert (saved.state, saved.has_managed_save) == ("shutoff", True)

    act(setup, "start")
    assert virt.domain_state(guest.host.target, guest.uuid) == virt.DomainState("running", "restored")
    assert row(guest).has_managed_save is False
    guest.wait_for_agent(30)
    after = guest.uptime()
    # A boot would have started the count again from zero; a restore carries on from where it stopped.
    assert after >= before, (before, after)


def test_discarding_a_managed_save_makes_the_next_start_a_fresh_boot(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    act(setup, "save")
    assert row(guest).has_managed_save is True

    act(setup, "discard-save")
    assert row(guest).has_managed_save is False
    info = virsh(guest.host.uri, "dominfo", guest.uuid, timeout=30)
    assert "Managed save: no" in " ".join(info.split()), info

    guest.mark_log()
    act(setup, "start")
    assert virt.domain_state(guest.host.target, guest.uuid) == virt.DomainState("running", "booted")
    guest.wait_for_marker(90)  # printed by a fresh boot only


def test_reboot_restarts_the_guest(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    began = time.monotonic()
    before = guest.uptime()
    guest.mark_log()

    act(setup, "reboot", mode="acpi")
    guest.wait_for_marker(90)  # the boot marker on the serial console, printed only by a fresh boot
    guest.wait_for_agent(60)

    after, elapsed = guest.uptime(), time.monotonic() - began
    # Without a reboot the guest's uptime would have grown by the wall time that passed.
    assert after < before + elapsed - 1, (before, after, elapsed)
    assert domstate(guest) == "running" and row(guest).state == "running"


def test_suspend_then_resume(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    act(setup, "suspend")
    assert domstate(guest) == "paused" and row(guest).state == "paused"

    act(setup, "resume")
    assert domstate(guest) == "running" and row(guest).state == "running"
    guest.wait_for_agent(30)
