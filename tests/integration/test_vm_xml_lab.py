"""The XML editor and the QEMU log for real: API → Redis → a Celery worker → libvirtd in the lab → the tiny guest.

The tiny guest is shared by the test run, so each test that changes its definition puts the old one
back (through the adapter) when it ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from hosts.models import Host
from kvmweb import virt
from kvmweb.operations.models import Operation
from kvmweb.virt import devices
from tests.factories import make_user
from tests.lab.guests import Guest
from tests.lab.virsh import virsh
from tests.stack import wait_until
from vms import logs
from vms.models import VirtualMachine

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(worker, running_tiny_guest, lab_host, transactional_db) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    guest: Guest = running_tiny_guest
    before = dumpxml(guest)
    ada = make_user("ada", admin=True)
    host = Host.objects.create(name="lab", uri=lab_host.uri, state=Host.State.CONNECTED)
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    yield {"api": api, "guest": guest, "worker_log": worker, "before": before}
    if dumpxml(guest) != before:
        secure = virsh(guest.host.uri, "dumpxml", "--inactive", "--security-info", guest.uuid, timeout=30)
        devices.redefine_domain_xml(lab_host.target, guest.uuid, secure)


def dumpxml(guest: Guest) -> str:
    return virsh(guest.host.uri, "dumpxml", "--inactive", guest.uuid, timeout=30).strip()


def apply(setup: dict[str, Any], xml: str) -> Operation:
    guest: Guest = setup["guest"]
    response = setup["api"].post(
        f"/api/v1/vms/{guest.uuid}/actions/define-xml/", {"xml": xml}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]

    def finished() -> bool:
        return Operation.objects.get(pk=op_id).status in ("succeeded", "failed")

    wait_until(finished, timeout=60, what="the define-xml operation", log=setup["worker_log"])
    return Operation.objects.get(pk=op_id)


def test_a_valid_change_reaches_the_persistent_definition(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    read = setup["api"].get(f"/api/v1/vms/{guest.uuid}/xml/?inactive=1")
    assert read.status_code == 200
    xml = read.json()["xml"]
    assert xml.strip() == setup["before"]
    assert "<description>" in xml  # the lab guest has one; a second would not match libvirt's schema
    edited = re.sub(r"<description>.*?</description>", "<description>edited by the xml lab test</description>", xml)

    op = apply(setup, edited)

    assert op.status == "succeeded", (op.error, op.error_detail, op.log)
    assert "<description>edited by the xml lab test</description>" in dumpxml(guest)
    assert "keeps its current configuration" in op.result["note"]
    assert guest.is_running()
    # The editor reads kvmweb's copy, which the worker refreshed: loading again shows the new
    # definition, while the running guest's live XML keeps the old description until it reboots.
    again = setup["api"].get(f"/api/v1/vms/{guest.uuid}/xml/?inactive=1").json()["xml"]
    live = setup["api"].get(f"/api/v1/vms/{guest.uuid}/xml/").json()["xml"]
    assert again.strip() == dumpxml(guest)
    assert "edited by the xml lab test" not in live


def test_an_invalid_change_fails_and_leaves_the_definition_unchanged(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    before = setup["before"]
    edited = before.replace("<vcpu", "<nonsense>1</nonsense>\n  <vcpu", 1)
    bad_line = next(n for n, line in enumerate(edited.splitlines(), start=1) if "<nonsense>" in line)

    op = apply(setup, edited)

    assert op.status == "failed"
    assert op.error.endswith(f"(line {bad_line})"), op.error
    assert "nonsense" in op.error_detail
    assert dumpxml(guest) == before


def test_the_running_guests_qemu_and_serial_logs_are_read(setup) -> None:  # type: ignore[no-untyped-def]
    guest: Guest = setup["guest"]
    vm = VirtualMachine.objects.select_related("host").get(uuid=guest.uuid)

    qemu, *serial = logs.vm_logs(vm)

    assert qemu.path == f"/var/log/libvirt/qemu/{guest.name}.log"
    assert qemu.text is not None, qemu.reason
    assert f"guest={guest.name}" in qemu.text  # the QEMU command line libvirt logs at each start
    assert [view.path for view in serial] == [f"/var/log/libvirt/qemu/{guest.name}-serial.log"]
    assert serial[0].text is not None, serial[0].reason
    assert serial[0].text.strip()
