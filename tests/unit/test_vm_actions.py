"""VM power and state actions: the state rules, the handlers on libvirt's test driver, bulk, API and pages.

alice owns her VMs, bob owns his, ada administers. VM rows come from the test driver through the
real reconcile, and each handler's effect is checked in libvirt itself (`virt.domain_state`).
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
from kvmweb.audit.models import AuditEvent
from kvmweb.errors import Conflict, Invalid
from kvmweb.operations.models import Operation
from kvmweb.virt.xml import DomainSpec, build_domain_xml
from tests.factories import make_host, make_vm
from tests.runs import actor_of, run
from vms import actions
from vms.actions import ACTIONS, allowed_actions, vm_action, vm_bulk_action
from vms.models import VirtualMachine

TEST_URI = "test:///default"
TARGET = virt.HostTarget(TEST_URI)
MakeDomain = Callable[..., VirtualMachine]


@pytest.fixture
def lab(alice):  # type: ignore[no-untyped-def]
    return make_host("testhost", uri=TEST_URI, members=(alice,))


@pytest.fixture
def domain(lab, alice) -> Iterator[MakeDomain]:  # type: ignore[no-untyped-def]
    """Define a domain on the test driver (optionally running), reconcile, and return its row (alice's)."""
    created: list[str] = []

    def make(*, running: bool = True, owner: Any = alice) -> VirtualMachine:
        spec = DomainSpec(name=f"act-{uuid.uuid4().hex[:10]}", uuid=str(uuid.uuid4()), memory_mib=128, vcpus=1)
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


def state(vm: VirtualMachine) -> str:
    return virt.domain_state(TARGET, str(vm.uuid)).state


def row(vm: VirtualMachine) -> VirtualMachine:
    return VirtualMachine.objects.get(pk=vm.pk)


# --- which states allow which action, and the exact refusals ---------------------------------------------------

REFUSALS = [
    ("suspend", "shutoff", {}, "Cannot pause: demo is shut off."),
    ("start", "running", {}, "Cannot start: demo is running."),
    ("start", "paused", {}, "Cannot start: demo is paused."),
    (
        "shutdown",
        "paused",
        {},
        "Cannot shut down: demo is paused, and a paused guest cannot react to ACPI or its agent. "
        "Resume it first, or use Force off.",
    ),
    ("shutdown", "shutoff", {}, "Cannot shut down: demo is shut off."),
    (
        "reboot",
        "paused",
        {},
        "Cannot reboot: demo is paused, and a paused guest cannot react to ACPI or its agent. "
        "Resume it first, or use Force off.",
    ),
    ("reboot", "shutoff", {}, "Cannot reboot: demo is shut off."),
    ("force-off", "shutoff", {}, "Cannot force off: demo is shut off."),
    ("resume", "running", {}, "Cannot resume: demo is running."),
    ("save", "shutoff", {}, "Cannot save: demo is shut off."),
    ("save", "shutdown", {}, "Cannot save: demo is shutting down."),
    ("discard-save", "shutoff", {}, "Cannot discard the saved state: demo has no saved state."),
    ("discard-save", "running", {"has_managed_save": True}, "Cannot discard the saved state: demo is running."),
    ("autostart-on", "running", {"autostart": True}, "Cannot turn on autostart: it is already on for demo."),
    ("autostart-off", "running", {}, "Cannot turn off autostart: it is already off for demo."),
    (
        "autostart-on",
        "running",
        {"persistent": False},
        "Cannot turn on autostart: demo is transient (it has no definition on the host to start from).",
    ),
    ("ctrl-alt-del", "paused", {}, "Cannot send Ctrl+Alt+Del: demo is paused."),
    ("start", "gone", {}, "Cannot start: demo is no longer on its host."),
]
ALLOWED = [
    ("start", "shutoff", {}),
    ("start", "crashed", {}),
    ("shutdown", "running", {}),
    ("shutdown", "blocked", {}),
    ("reboot", "running", {}),
    ("force-off", "running", {}),
    ("force-off", "paused", {}),
    ("force-off", "shutdown", {}),
    ("force-off", "pmsuspended", {}),
    ("suspend", "running", {}),
    ("resume", "paused", {}),
    ("save", "running", {}),
    ("save", "paused", {}),
    ("discard-save", "shutoff", {"has_managed_save": True}),
    ("autostart-on", "shutoff", {}),
    ("autostart-off", "running", {"autostart": True}),
    ("ctrl-alt-del", "running", {}),
]


@pytest.mark.parametrize(
    ("action", "vm_state", "fields", "message"), REFUSALS, ids=[f"{a}-{s}" for a, s, _, _ in REFUSALS]
)
def test_action_is_refused_in_the_wrong_state_with_a_plain_message(
    queued, host, ada, action, vm_state, fields, message
):  # type: ignore[no-untyped-def]
    vm = make_vm(host, "demo", state=vm_state, **fields)
    with pytest.raises(Conflict) as refused:
        vm_action(actor=actor_of(ada), vm=vm, action=action, params={})
    assert refused.value.message == message
    assert refused.value.details == {"state": vm_state, "action": action}
    assert not Operation.objects.exists()
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome, event.message) == (f"vm.{action}", "failed", message)


@pytest.mark.parametrize(("action", "vm_state", "fields"), ALLOWED, ids=[f"{a}-{s}" for a, s, _ in ALLOWED])
def test_action_is_queued_in_an_allowed_state(queued, host, ada, action, vm_state, fields):  # type: ignore[no-untyped-def]
    vm = make_vm(host, "demo", state=vm_state, **fields)
    op = vm_action(actor=actor_of(ada), vm=vm, action=action, params={})
    assert (op.kind, op.status, op.target_id, op.target_label) == (f"vm.{action}", "pending", str(vm.uuid), "demo")


def test_unknown_action_lists_the_valid_ones(queued, host, ada):  # type: ignore[no-untyped-def]
    vm = make_vm(host, "demo")
    with pytest.raises(Invalid) as refused:
        vm_action(actor=actor_of(ada), vm=vm, action="explode", params={})
    assert refused.value.message.startswith(
        "Unknown VM action 'explode'; VMs support: start, shutdown, reboot, force-off, suspend, resume, save, "
        "discard-save, autostart-on, autostart-off, ctrl-alt-del, "
    )
    # The other apps register theirs in import order, which is not part of the contract.
    listed = refused.value.message.split("support: ")[1].rstrip(".").split(", ")
    assert {"clone", "delete", "set-resources", "update-nic", "define-xml"} <= set(listed)


def test_shutdown_parameters_are_checked_and_defaulted(queued, host, ada, settings):  # type: ignore[no-untyped-def]
    settings.KVMWEB_SHUTDOWN_TIMEOUT = 77
    vm = make_vm(host, "demo")
    with pytest.raises(Invalid, match=re.escape("Unknown mode 'bios'; use auto, acpi or agent.")):
        vm_action(actor=actor_of(ada), vm=vm, action="shutdown", params={"mode": "bios"})
    with pytest.raises(Invalid, match=re.escape("The timeout is a whole number of seconds from 1 to 1800.")):
        vm_action(actor=actor_of(ada), vm=vm, action="shutdown", params={"timeout": "soon"})
    with pytest.raises(Invalid, match=re.escape("Pause takes no parameter mode; it accepts: none.")):
        vm_action(actor=actor_of(ada), vm=vm, action="suspend", params={"mode": "acpi"})
    op = vm_action(actor=actor_of(ada), vm=vm, action="shutdown", params={})
    assert op.params == {"mode": "auto", "timeout": 77}


def test_a_second_action_while_one_is_active_is_refused(queued, host, ada):  # type: ignore[no-untyped-def]
    vm = make_vm(host, "demo")
    first = vm_action(actor=actor_of(ada), vm=vm, action="suspend", params={})
    with pytest.raises(Conflict, match=f"demo is busy: Pause VM \\(#{first.pk}, requested by ada\\) is pending."):
        vm_action(actor=actor_of(ada), vm=vm, action="force-off", params={})


def test_allowed_actions_follow_the_state_and_restore_replaces_start(host):  # type: ignore[no-untyped-def]
    running = make_vm(host, "web", state="running")
    assert [spec.name for spec in allowed_actions(running)] == [
        "shutdown", "reboot", "force-off", "suspend", "save", "autostart-on", "ctrl-alt-del",
    ]  # fmt: skip
    saved = make_vm(host, "db", state="shutoff", has_managed_save=True, autostart=True)
    specs = {spec.name: spec for spec in allowed_actions(saved)}
    assert list(specs) == ["start", "discard-save", "autostart-off"]
    assert (specs["start"].label, specs["start"].icon) == ("Restore", "history")
    assert specs["discard-save"].danger is True
    assert specs["discard-save"].confirm.startswith("Discard the saved state of db?")
    fresh = make_vm(host, "new", state="shutoff")
    assert next(spec.label for spec in allowed_actions(fresh)) == "Start"
    force = {spec.name: spec for spec in allowed_actions(running)}["force-off"]
    assert force.danger and force.confirm.startswith("Force off web? This pulls the plug")


def test_bulk_actions_are_the_power_actions() -> None:
    assert [spec.name for spec in actions.bulk_actions()] == [
        "start", "shutdown", "reboot", "force-off", "suspend", "resume",
    ]  # fmt: skip
    assert "the selected VMs" in {s.name: s for s in actions.bulk_actions()}["force-off"].confirm
    assert set(ACTIONS) >= set(actions.BULK_ACTIONS)


# --- handlers, through claim + run, against the test driver ------------------------------------------------------


def test_start_boots_a_shut_off_domain_and_updates_the_row(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    op = act(vm, "start", alice)
    assert op.status == "succeeded", op.error
    assert state(vm) == "running" and row(vm).state == "running"
    assert op.result == {"state": "running"}


def test_shutdown_waits_for_shut_off(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    op = act(vm, "shutdown", alice)
    assert op.status == "succeeded", op.error
    assert state(vm) == "shutoff" and row(vm).state == "shutoff"
    # The test driver has no guest agent, so auto leaves the choice to the hypervisor.
    assert op.result["mode"] == "default" and op.result["state"] == "shutoff"
    assert [entry["message"] for entry in op.log][:2] == [
        f"Checking whether the guest agent of {vm.name} answers",
        f"Asking {vm.name} to shut down through ACPI",
    ]


def test_shutdown_that_does_not_finish_in_time_fails_and_never_forces(queued, domain, alice, monkeypatch):  # type: ignore[no-untyped-def]
    vm = domain()
    # The test driver's guests obey at once; a guest ignoring ACPI can only be simulated at the adapter.
    monkeypatch.setattr(virt, "domain_state", lambda target, uuid: virt.DomainState("running", "booted"))
    destroyed: list[str] = []
    monkeypatch.setattr(virt, "destroy_domain", lambda target, uuid: destroyed.append(uuid))
    op = act(vm, "shutdown", alice, timeout=1)
    assert op.status == "failed"
    assert op.error == (
        f"{vm.name} did not shut down within 1 s. The guest may be ignoring ACPI; use Force off if you must."
    )
    assert destroyed == []
    assert any("Waiting for" in entry["message"] for entry in op.log)
    assert AuditEvent.objects.get(operation=op).outcome == "failed"


def test_a_timed_out_shutdown_offers_force_off_where_it_is_shown(queued, domain, alice, monkeypatch):  # type: ignore[no-untyped-def]
    vm = domain()
    # A guest ignoring ACPI: the request is lost, and the domain keeps running.
    monkeypatch.setattr(virt, "shutdown_domain", lambda target, uuid, mode: None)
    failed = act(vm, "shutdown", alice, timeout=1)
    assert (failed.status, failed.result) == ("failed", {"suggest": "force-off"})
    client = Client()
    client.force_login(alice)
    form = f'action="/vms/{vm.uuid}/actions/force-off/"'
    for page in (f"/vms/{vm.uuid}/", f"/operations/{failed.pk}/"):
        html = client.get(page).content.decode()
        assert html.count(form) == 1 + (page == f"/vms/{vm.uuid}/"), page  # the VM page's More menu has one too
        assert f"Force off {vm.name}? This pulls the plug" in html
    response = client.post(
        f"/vms/{vm.uuid}/actions/force-off/", {"confirm": "yes", "next": f"/operations/{failed.pk}/"}
    )
    assert response.status_code == 302 and response["Location"] == f"/operations/{failed.pk}/"
    forced = run(Operation.objects.get(kind="vm.force-off"))
    assert (forced.status, state(vm)) == ("succeeded", "shutoff")
    assert client.get(f"/vms/{vm.uuid}/").content.decode().count(form) == 0  # shut off: nothing left to force


def test_a_libvirt_refusal_fails_with_the_plain_message_and_keeps_the_raw_one(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    op = act(vm, "shutdown", alice, mode="acpi")  # the test driver takes no shutdown flags
    assert op.status == "failed"
    assert op.error.startswith("A value was not accepted.")
    assert "unsupported flags (0x1)" in op.error_detail
    assert state(vm) == "running"


def test_reboot_keeps_it_running(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    op = act(vm, "reboot", alice)
    assert op.status == "succeeded", op.error
    assert state(vm) == "running" and row(vm).state == "running"


def test_force_off_powers_off_at_once(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    op = act(vm, "force-off", alice)
    assert op.status == "succeeded", op.error
    assert virt.domain_state(TARGET, str(vm.uuid)) == virt.DomainState("shutoff", "destroyed")
    assert (row(vm).state, row(vm).state_reason) == ("shutoff", "destroyed")


def test_suspend_then_resume(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    assert act(vm, "suspend", alice).status == "succeeded"
    assert state(vm) == "paused" and row(vm).state == "paused"
    assert act(row(vm), "resume", alice).status == "succeeded"
    assert state(vm) == "running" and row(vm).state == "running"


def test_save_then_start_restores_and_discard_save_forgets(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    assert act(vm, "save", alice).status == "succeeded"
    saved = row(vm)
    assert state(vm) == "shutoff" and (saved.state, saved.has_managed_save) == ("shutoff", True)
    assert next(s.label for s in allowed_actions(saved)) == "Restore"

    assert act(saved, "start", alice).status == "succeeded"
    assert state(vm) == "running" and row(vm).has_managed_save is False

    assert act(row(vm), "save", alice).status == "succeeded"
    assert act(row(vm), "discard-save", alice).status == "succeeded"
    assert row(vm).has_managed_save is False
    assert virt.get_domain_record(TARGET, str(vm.uuid)).has_managed_save is False


def test_autostart_on_and_off(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    assert act(vm, "autostart-on", alice).status == "succeeded"
    assert virt.get_domain(TARGET, str(vm.uuid)).autostart is True and row(vm).autostart is True
    assert act(row(vm), "autostart-off", alice).status == "succeeded"
    assert virt.get_domain(TARGET, str(vm.uuid)).autostart is False and row(vm).autostart is False


def test_ctrl_alt_del_is_sent(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    op = act(vm, "ctrl-alt-del", alice)
    assert op.status == "succeeded", op.error
    assert state(vm) == "running"


def test_a_handler_publishes_the_new_state(queued, domain, alice, django_capture_on_commit_callbacks, monkeypatch):  # type: ignore[no-untyped-def]
    from vms import handlers

    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(
        handlers, "vms_publish", lambda vms, host_id: sent.extend((str(vm.uuid), vm.state) for vm in vms)
    )
    vm = domain()
    act(vm, "suspend", alice)
    assert sent == [(str(vm.uuid), "paused")]


def test_a_vm_gone_before_the_worker_runs_fails_plainly(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    op = vm_action(actor=actor_of(alice), vm=vm, action="suspend", params={})
    VirtualMachine.objects.filter(pk=vm.pk).update(state="gone")
    op = run(op)
    assert (op.status, op.error) == ("failed", f"{vm.name} is no longer on its host.")
    assert state(vm) == "running"


# --- bulk --------------------------------------------------------------------------------------------------------


def test_bulk_queues_what_it_can_and_explains_the_rest(queued, domain, alice, bob):  # type: ignore[no-untyped-def]
    on, off = domain(), domain(running=False)
    theirs = domain(owner=bob)
    result = vm_bulk_action(actor=actor_of(alice), vms=[on, off, theirs], action="suspend", params={})
    assert [op.target_id for op in result.operations] == [str(on.uuid)]
    assert [(vm.name, message) for vm, message in result.refused] == [
        (off.name, f"Cannot pause: {off.name} is shut off."),
        (theirs.name, f"Cannot pause {theirs.name}: Not found."),
    ]
    assert AuditEvent.objects.filter(outcome="denied", action="vm.act", target_label=theirs.name).count() == 1
    assert run(result.operations[0]).status == "succeeded" and state(on) == "paused"


def test_bulk_runs_one_operation_per_vm(queued, domain, ada, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    vms = [domain(running=False) for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        result = vm_bulk_action(actor=actor_of(ada), vms=vms, action="start", params={})
    assert len(result.operations) == 3 and result.refused == []
    assert sorted(queued) == sorted(op.pk for op in result.operations)
    for op in result.operations:
        assert run(op).status == "succeeded"
    assert [state(vm) for vm in vms] == ["running"] * 3


def test_a_bulk_start_is_one_task_that_reads_its_vms_once(queued, domain, ada):  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from kvmweb.operations import services as operation_services

    vms = [domain(running=False) for _ in range(3)]
    gone = domain(running=False)
    result = vm_bulk_action(actor=actor_of(ada), vms=[*vms, gone], action="start", params={})
    VirtualMachine.objects.filter(pk=gone.pk).update(state="gone")
    messages = [(op.pk, op.kind, op.queue) for op in result.operations]
    [(task, options)] = operation_services._task_messages(messages)
    assert options["args"] == [[op.pk for op in result.operations], "vm.start"]
    with CaptureQueriesContext(connection) as queries:
        task.run(*options["args"])
    table = VirtualMachine._meta.db_table
    vm_reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and table in q["sql"]]
    assert len(vm_reads) == 1
    host_reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and table not in q["sql"]]
    assert not [sql for sql in host_reads if "hosts_host" in sql]  # nothing it left unread was needed after all
    ended = {op.target_id: op for op in Operation.objects.filter(pk__in=[op.pk for op in result.operations])}
    assert [ended[str(vm.uuid)].status for vm in vms] == ["succeeded"] * 3
    assert ended[str(gone.uuid)].error == f"{gone.name} is no longer on its host."
    assert [state(vm) for vm in vms] == ["running"] * 3


def test_a_bulk_start_writes_its_vms_together_and_pushes_each(queued, domain, ada, monkeypatch):  # type: ignore[no-untyped-def]
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from kvmweb.operations import services as operation_services
    from vms import handlers

    vms = [domain(running=False) for _ in range(3)]
    result = vm_bulk_action(actor=actor_of(ada), vms=vms, action="start", params={})
    [(task, options)] = operation_services._task_messages([(op.pk, op.kind, op.queue) for op in result.operations])
    pushed: list[tuple[int, list[str]]] = []
    monkeypatch.setattr(
        handlers, "vms_publish", lambda rows, host_id: pushed.append((host_id, [str(vm.state) for vm in rows]))
    )
    with CaptureQueriesContext(connection) as queries:
        task.run(*options["args"])
    table = VirtualMachine._meta.db_table
    vm_writes = [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and table in q["sql"]]
    assert len(vm_writes) == (1 if connection.vendor == "postgresql" else 3)
    assert pushed == [(vms[0].host_id, ["running"] * 3)]
    stored = VirtualMachine.objects.filter(pk__in=[vm.pk for vm in vms])
    assert {(vm.state, vm.version) for vm in stored} == {("running", vms[0].version + 1)}
    assert all(vm.updated > vms[0].updated and vm.state_changed for vm in stored)


def test_a_bulk_start_leaves_a_row_the_events_process_wrote_meanwhile(queued, domain, ada, monkeypatch):  # type: ignore[no-untyped-def]
    from django.db.models import F

    from kvmweb.operations import services as operation_services
    from vms import handlers

    vms = [domain(running=False) for _ in range(2)]
    result = vm_bulk_action(actor=actor_of(ada), vms=vms, action="start", params={})
    [(task, options)] = operation_services._task_messages([(op.pk, op.kind, op.queue) for op in result.operations])
    update = handlers.rows_update

    def newer_observation_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The guest went down again and the events process recorded it before the batch wrote its rows.
        VirtualMachine.objects.filter(pk=vms[0].pk).update(state="crashed", version=F("version") + 1)
        return update(*args, **kwargs)

    monkeypatch.setattr(handlers, "rows_update", newer_observation_first)
    task.run(*options["args"])
    assert (row(vms[0]).state, row(vms[1]).state) == ("crashed", "running")


def test_a_single_start_writes_its_vm_at_once(queued, domain, ada):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    op = vm_action(actor=actor_of(ada), vm=vm, action="start", params={})
    assert run(op).status == "succeeded" and state(vm) == "running"


# --- API -----------------------------------------------------------------------------------------------------------


def api_client(user: Any) -> Client:
    if user is None:
        return Client()
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")


def test_api_action_answers_202_with_the_operation(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    response = api_client(alice).post(
        f"/api/v1/vms/{vm.uuid}/actions/shutdown/", {"mode": "acpi", "timeout": 30}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    op = Operation.objects.get()
    body = response.json()
    assert body == {
        "operation": {
            "id": op.pk,
            "kind": "vm.shutdown",
            "target": {"type": "vm", "id": str(vm.uuid), "label": vm.name},
            "status": "pending",
            "progress": None,
            "message": "",
            "error": "",
            "error_detail": "",
            "requested_by": "alice",
            "created": body["operation"]["created"],
            "started": None,
            "finished": None,
        }
    }
    assert op.params == {"mode": "acpi", "timeout": 30}


def test_api_state_refusal_is_409(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    response = api_client(alice).post(f"/api/v1/vms/{vm.uuid}/actions/suspend/")
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "conflict",
            "message": f"Cannot pause: {vm.name} is shut off.",
            "details": {"state": "shutoff", "action": "suspend"},
        }
    }


def test_api_second_conflicting_action_is_409_naming_the_running_one(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    client = api_client(alice)
    first = client.post(f"/api/v1/vms/{vm.uuid}/actions/shutdown/")
    assert first.status_code == 202
    op_id = first.json()["operation"]["id"]
    Operation.objects.filter(pk=op_id).update(status="running")  # a worker has claimed it
    second = client.post(f"/api/v1/vms/{vm.uuid}/actions/force-off/")
    assert second.status_code == 409
    assert second.json() == {
        "error": {
            "code": "conflict",
            "message": f"{vm.name} is busy: Shut down VM (#{op_id}, requested by alice) is running.",
            "details": {"operation": op_id},
        }
    }
    assert list(Operation.objects.values_list("pk", flat=True)) == [op_id]


def test_api_unknown_action_and_bad_params_are_400(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    response = api_client(alice).post(f"/api/v1/vms/{vm.uuid}/actions/explode/")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    assert "VMs support: start, shutdown" in response.json()["error"]["message"]
    bad = api_client(alice).post(
        f"/api/v1/vms/{vm.uuid}/actions/shutdown/", {"timeout": 0}, content_type="application/json"
    )
    assert bad.status_code == 400 and bad.json()["error"]["details"] == {
        "timeout": "The timeout is a whole number of seconds from 1 to 1800."
    }


def test_api_other_users_vm_is_404_and_audited(queued, domain, bob):  # type: ignore[no-untyped-def]
    vm = domain()  # alice's
    response = api_client(bob).post(f"/api/v1/vms/{vm.uuid}/actions/force-off/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert not Operation.objects.exists() and state(vm) == "running"
    event = AuditEvent.objects.get()
    assert (event.actor_name, event.action, event.outcome, event.target_label) == ("bob", "vm.act", "denied", "")
    assert event.target_id == str(vm.uuid)


def test_api_owner_and_admin_may_act(queued, domain, alice, ada):  # type: ignore[no-untyped-def]
    vm = domain()
    assert api_client(alice).post(f"/api/v1/vms/{vm.uuid}/actions/suspend/").status_code == 202
    other = domain()
    assert api_client(ada).post(f"/api/v1/vms/{other.uuid}/actions/suspend/").status_code == 202


def test_api_anonymous_gets_401(queued, domain):  # type: ignore[no-untyped-def]
    vm = domain()
    response = api_client(None).post(f"/api/v1/vms/{vm.uuid}/actions/suspend/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_access_rule_refuses_a_visible_vm_the_user_does_not_own(domain, alice, bob, monkeypatch):  # type: ignore[no-untyped-def]
    # Today only owners see a VM; the rule holds even if visibility widens (say, to a team).
    from kvmweb import access
    from kvmweb.errors import Forbidden

    vm = domain(owner=bob)
    monkeypatch.setattr(access, "can_see", lambda user, obj: True)
    with pytest.raises(Forbidden, match=re.escape("Only the VM's owner or an administrator can do that.")):
        access.authorize(actor_of(alice), "vm.act", vm, target=vm.as_target())
    assert AuditEvent.objects.get(outcome="denied").action == "vm.act"
    assert access.can_act(alice, vm) is False and access.can_act(bob, vm) is True


def test_api_bulk_answers_operations_and_refusals(queued, domain, alice, bob):  # type: ignore[no-untyped-def]
    on, off, theirs = domain(), domain(running=False), domain(owner=bob)
    unknown = uuid.uuid4()
    response = api_client(alice).post(
        "/api/v1/vms/actions/suspend/",
        {"vms": [str(on.uuid), str(off.uuid), str(theirs.uuid), str(unknown)]},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert [op["target"]["id"] for op in body["operations"]] == [str(on.uuid)]
    assert body["operations"][0]["status"] == "pending"
    assert body["refused"] == [
        {"vm": str(theirs.uuid), "message": "No such VM."},
        {"vm": str(unknown), "message": "No such VM."},
        {"vm": str(off.uuid), "message": f"Cannot pause: {off.name} is shut off."},
    ]


def test_api_bulk_needs_a_list_of_uuids(queued, alice):  # type: ignore[no-untyped-def]
    client = api_client(alice)
    for body in ({}, {"vms": []}, {"vms": "abc"}, {"vms": ["not-a-uuid"]}):
        response = client.post("/api/v1/vms/actions/start/", body, content_type="application/json")
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "invalid"
    assert client.post("/api/v1/vms/actions/explode/", {"vms": []}, content_type="application/json").status_code == 400


# --- pages ---------------------------------------------------------------------------------------------------------


def test_page_action_needs_csrf(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain()
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(f"/vms/{vm.uuid}/actions/suspend/").status_code == 403
    assert not Operation.objects.exists()
    page = client.get(f"/vms/{vm.uuid}/")
    token = page.cookies["csrftoken"].value
    response = client.post(f"/vms/{vm.uuid}/actions/suspend/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == f"/vms/{vm.uuid}/"
    assert Operation.objects.get().kind == "vm.suspend"


def test_page_action_redirects_back_with_a_message(queued, domain, alice):  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    client = Client()
    client.force_login(alice)
    response = client.post(f"/vms/{vm.uuid}/actions/suspend/", {"next": "/vms/"}, follow=True, HTTP_REFERER="/vms/")
    assert [str(m) for m in response.context["messages"]] == [f"Cannot pause: {vm.name} is shut off."]
    response = client.post(f"/vms/{vm.uuid}/actions/start/", {"next": "/vms/?state=shutoff"})
    assert response.status_code == 302 and response["Location"] == "/vms/?state=shutoff"
    assert client.get(f"/vms/{uuid.uuid4()}/actions/start/").status_code == 405


def test_page_action_on_other_users_vm_is_404(queued, domain, bob):  # type: ignore[no-untyped-def]
    vm = domain()
    client = Client()
    client.force_login(bob)
    assert client.post(f"/vms/{vm.uuid}/actions/force-off/").status_code == 404
    assert not Operation.objects.exists()


def test_page_bulk_action_reports_queued_and_refused(queued, domain, alice):  # type: ignore[no-untyped-def]
    on, off = domain(), domain(running=False)
    client = Client()
    client.force_login(alice)
    response = client.post("/vms/actions/suspend/", {"vms": [str(on.uuid), str(off.uuid)]}, follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        f"Pause: 1 queued; 1 refused: Cannot pause: {off.name} is shut off."
    ]
    assert Operation.objects.get().target_id == str(on.uuid)


def test_bulk_bar_chooses_shutdown_mode_and_timeout(queued, domain, alice, settings):  # type: ignore[no-untyped-def]
    on, off = domain(), domain(running=False)
    client = Client()
    client.force_login(alice)
    html = client.get("/vms/").content.decode()
    form = html[
        html.index('<form method="post" id="vm-bulk-form"') : html.index("</form>", html.index('id="vm-bulk-form"'))
    ]
    for mode in ("auto", "acpi", "agent"):
        assert re.search(rf'formaction="/vms/actions/shutdown/" name="mode" value="{mode}"', form), mode
    assert re.search(r'<input [^>]*name="timeout" min="1" max="1800"[^>]*placeholder="default"', form)
    # What the form sends: the pressed button's mode, the typed timeout, and the (empty) timeout with any other action.
    client.post("/vms/actions/shutdown/", {"vms": [str(on.uuid)], "mode": "acpi", "timeout": "30"})
    assert Operation.objects.get(kind="vm.shutdown").params == {"mode": "acpi", "timeout": 30}
    client.post("/vms/actions/start/", {"vms": [str(off.uuid)], "timeout": ""})
    assert Operation.objects.get(kind="vm.start").target_id == str(off.uuid)
    Operation.objects.all().delete()
    client.post("/vms/actions/shutdown/", {"vms": [str(on.uuid)], "mode": "auto", "timeout": ""})
    assert Operation.objects.get().params == {"mode": "auto", "timeout": settings.KVMWEB_SHUTDOWN_TIMEOUT}


def test_detail_and_list_pages_get_the_actions(queued, domain, alice, bob):  # type: ignore[no-untyped-def]
    vm = domain()
    client = Client()
    client.force_login(alice)
    detail = client.get(f"/vms/{vm.uuid}/")
    assert detail.context["can_act"] is True
    assert [spec.name for spec in detail.context["actions"]] == [spec.name for spec in allowed_actions(vm)]
    listing = client.get("/vms/")
    assert listing.context["can_act"] is True
    assert [spec.name for spec in listing.context["bulk_actions"]] == list(actions.BULK_ACTIONS)


def test_actions_are_refused_and_not_offered_while_the_host_is_unreachable(queued, host, ada):  # type: ignore[no-untyped-def]
    vm = make_vm(host, "demo", state="running")
    host.state = host.State.UNREACHABLE
    host.save(update_fields=["state"])
    vm.refresh_from_db()
    with pytest.raises(Conflict) as refused:
        vm_action(actor=actor_of(ada), vm=vm, action="shutdown", params={})
    assert refused.value.message == (
        "Cannot shut down: its host lab is unreachable. The action comes back once kvmweb reaches the host again."
    )
    assert allowed_actions(vm) == [] and queued == []
