"""Operation handlers for VM power and state actions, run by a worker.

Each one re-reads the VM row and its host, calls the adapter, then refreshes the row from a fresh
look at the domain and publishes it, so the page is right even without the events process.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.utils import timezone

from hosts.models import Host
from kvmweb import virt
from kvmweb.errors import Invalid, KvmwebError
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress
from kvmweb.rows import rows_update
from vms.messages import vms_publish
from vms.models import VirtualMachine
from vms.services import vm_apply_record

POLL_INTERVAL = 0.5
# Eight starts on one task: a bulk start of a hundred VMs is still thirteen tasks for the workers to share.
BATCH = 8
AGENT_PING_TIMEOUT = 2


def vm_for_operation(op: Operation) -> tuple[VirtualMachine, Host]:
    vm = op.target_row if isinstance(op.target_row, VirtualMachine) else None
    if vm is None:
        try:  # get(), not first(): the model's ordering would cost every operation a sort it does not need
            vm = VirtualMachine.objects.select_related("host").get(uuid=op.target_id)
        except VirtualMachine.DoesNotExist:
            vm = None
    if vm is None or vm.state == VirtualMachine.State.GONE:
        raise Invalid(f"{op.target_label} is no longer on its host.")
    return vm, vm.host


def vms_preload(ops: Sequence[Operation]) -> None:
    """A batch's VMs and hosts in one query, for `vm_for_operation`."""
    # The host's facts go unread: a power action needs its connection, and they'd be decoded once per VM.
    rows = VirtualMachine.objects.select_related("host").defer("host__capabilities", "host__interfaces")
    rows = rows.filter(uuid__in=[op.target_id for op in ops]).order_by()
    by_uuid = {str(vm.uuid): vm for vm in rows}
    for op in ops:
        op.target_row = by_uuid.get(op.target_id)


def vm_refresh(
    host: Host, uuid: str, *, row: VirtualMachine | None = None, hold: bool = False
) -> VirtualMachine | None:
    """Make the row match what libvirt says now, and publish it when it changed.

    `row`, when given, is the VM's row as this operation read it, updated in place. With `hold`, an
    update of it is left for `vms_settle` to write and publish (see `vm_apply_record`).
    """
    try:
        record: virt.DomainRecord | None = virt.get_domain_record(host.virt_target(), uuid)
    except virt.NotFound:
        record = None
    vm = vm_apply_record(host=host, uuid=uuid, record=record, now=timezone.now(), row=row, hold=hold)
    if vm is not None:
        vms_publish([vm], host_id=host.pk)
    return vm


def _refresh_after(host: Host, vm: VirtualMachine, op: Operation) -> str:
    """Refresh after an action, which may itself have failed: that failure is the one to report.
    Returns the VM's state as libvirt reports it now (as last known, when libvirt can't be read).

    In a batch (the row was preloaded) the change is held on the row for `vms_settle`."""
    with contextlib.suppress(virt.VirtError):  # the events process or the next reconcile corrects the row
        vm_refresh(host, str(vm.uuid), row=vm, hold=op.target_row is vm)
    return str(vm.state)


def vms_settle(ops: Sequence[Operation]) -> None:
    """Write the rows a batch's operations changed, a statement per set of columns, then publish them."""
    held = [op.target_row for op in ops if isinstance(op.target_row, VirtualMachine) and op.target_row.held_fields]
    by_fields: dict[tuple[str, ...], list[VirtualMachine]] = {}
    for vm in held:
        by_fields.setdefault(vm.held_fields, []).append(vm)
        vm.held_fields = ()
    written: set[int] = set()
    for fields, rows in by_fields.items():
        # Only over the version this batch read: the events process may have written a newer observation since.
        written |= rows_update(rows, fields, guard=("version", [vm.version - 1 for vm in rows]))
    held = [vm for vm in held if vm.pk in written]
    for host_id in {vm.host_id for vm in held}:
        vms_publish([vm for vm in held if vm.host_id == host_id], host_id=host_id)


def _simple(
    call: Callable[[virt.HostTarget, str], None], doing: str
) -> Callable[[Operation, Progress], dict[str, Any]]:
    def handler(op: Operation, progress: Progress) -> dict[str, Any]:
        vm, host = vm_for_operation(op)
        progress(10, f"{doing} {vm.name}")
        try:
            call(host.virt_target(), str(vm.uuid))
        finally:
            state = _refresh_after(host, vm, op)
        return {"state": state}

    return handler


def _choose_mode(host: Host, vm: VirtualMachine, mode: str) -> virt.PowerMode:
    """`auto` is the agent when it answers, else the hypervisor's default (ACPI on QEMU without an agent)."""
    if mode == "acpi":
        return "acpi"
    if mode == "agent":
        return "agent"
    return "agent" if virt.guest_agent_answers(host.virt_target(), str(vm.uuid), AGENT_PING_TIMEOUT) else None


def _described(mode: virt.PowerMode) -> str:
    return {"acpi": "the ACPI power button", "agent": "the guest agent"}.get(mode or "", "ACPI")


def _shutdown(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    target, uuid = host.virt_target(), str(vm.uuid)
    timeout = int(op.params.get("timeout", 120))
    progress(5, f"Checking whether the guest agent of {vm.name} answers")
    mode = _choose_mode(host, vm, str(op.params.get("mode", "auto")))
    progress(10, f"Asking {vm.name} to shut down through {_described(mode)}")
    virt.shutdown_domain(target, uuid, mode=mode)
    began = time.monotonic()
    deadline = began + timeout
    while True:
        try:
            state = virt.domain_state(target, uuid).state
        except virt.NotFound:  # a transient guest is gone once it is off
            state = "shutoff"
        elapsed = time.monotonic() - began
        if state == "shutoff":
            vm_refresh(host, uuid)
            return {"state": "shutoff", "mode": mode or "default", "seconds": round(elapsed, 1)}
        if time.monotonic() >= deadline:
            vm_refresh(host, uuid)
            # The failed operation offers Force off (templates/partials/op_force_off.html); never taken here.
            raise KvmwebError(
                f"{vm.name} did not shut down within {timeout} s. "
                "The guest may be ignoring ACPI; use Force off if you must.",
                details={"suggest": "force-off"},
            )
        waited = f"Waiting for {vm.name} to shut down ({int(elapsed)} s of {timeout} s)"
        progress(10 + int(85 * elapsed / timeout), waited)
        time.sleep(POLL_INTERVAL)  # the worker waits on the hypervisor; nothing else can tell it sooner


def _reboot(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    mode = _choose_mode(host, vm, str(op.params.get("mode", "auto")))
    progress(20, f"Asking {vm.name} to reboot through {_described(mode)}")
    try:
        virt.reboot_domain(host.virt_target(), str(vm.uuid), mode=mode)
    finally:
        state = _refresh_after(host, vm, op)
    return {"state": state, "mode": mode or "default"}


def _autostart(enabled: bool) -> Callable[[virt.HostTarget, str], None]:
    def call(target: virt.HostTarget, uuid: str) -> None:
        virt.set_autostart(target, uuid, enabled=enabled)

    return call


# Starting or powering off twice is not harmless, so a dropped connection fails the operation
# with its reason instead of retrying behind the user's back.
# The last column is how many of a bulk request's operations one task runs in turn: only calls that
# return at once batch; a shutdown waits for the guest, a reboot for its agent, a save writes the memory.
_KINDS: tuple[tuple[str, str, Callable[[Operation, Progress], dict[str, Any]], int, int], ...] = (
    ("vm.start", "Start VM", _simple(virt.start_domain, "Starting"), 600, BATCH),
    ("vm.shutdown", "Shut down VM", _shutdown, 1900, 1),
    ("vm.reboot", "Reboot VM", _reboot, 300, 1),
    ("vm.force-off", "Force off VM", _simple(virt.destroy_domain, "Powering off"), 300, BATCH),
    ("vm.suspend", "Pause VM", _simple(virt.suspend_domain, "Pausing"), 300, BATCH),
    ("vm.resume", "Resume VM", _simple(virt.resume_domain, "Resuming"), 300, BATCH),
    ("vm.save", "Save VM state", _simple(virt.managed_save_domain, "Saving the memory of"), 3000, 1),
    (
        "vm.discard-save",
        "Discard saved state",
        _simple(virt.managed_save_remove, "Discarding the saved state of"),
        300,
        BATCH,
    ),
    ("vm.autostart-on", "Turn on autostart", _simple(_autostart(True), "Turning on autostart for"), 300, BATCH),
    ("vm.autostart-off", "Turn off autostart", _simple(_autostart(False), "Turning off autostart for"), 300, BATCH),
    ("vm.ctrl-alt-del", "Send Ctrl+Alt+Del", _simple(virt.send_ctrl_alt_del, "Sending Ctrl+Alt+Del to"), 300, BATCH),
)
for _name, _label, _handler, _deadline, _batch in _KINDS:
    operation_kind(
        _name,
        label=_label,
        deadline_seconds=_deadline,
        retry_transient=False,
        batch=_batch,
        preload=vms_preload,
        settle=vms_settle,
    )(_handler)
