"""Power and state actions on VMs: one table and one service shared by the pages and the API.

`vm_action` checks an action against the VM's last observed state and queues it as an operation
(`vm.<action>`); the worker runs it (vms/handlers.py). Refusals are plain sentences a user can act on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record
from kvmweb.errors import Conflict, Forbidden, Invalid, KvmwebError, NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.services import (
    OperationRequest,
    operation_start,
    operations_queued_together,
    operations_start,
)
from kvmweb.targets import Target
from vms import selectors
from vms.models import VirtualMachine

S = VirtualMachine.State
RUNNING = frozenset({S.RUNNING, S.BLOCKED})
ACTIVE = frozenset({S.RUNNING, S.BLOCKED, S.PAUSED, S.SHUTDOWN, S.PMSUSPENDED, S.CRASHED})
ANY_STATE = frozenset(S.values) - {S.GONE}
SHUTDOWN_MODES = ("auto", "acpi", "agent")
MAX_SHUTDOWN_TIMEOUT = 1800


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action as the table defines it; `allowed_actions` hands out copies worded for one VM."""

    name: str
    label: str
    icon: str  # a Tabler icon name
    verb: str  # for refusals: "Cannot <verb>: ..."
    states: frozenset[str]
    danger: bool = False
    confirm: str = ""  # asked before a dangerous action; {name} is the VM's name
    params: tuple[str, ...] = ()
    # Per-state refusals that say more than "<name> is <state>"; {name} is the VM's name.
    hints: Mapping[str, str] = field(default_factory=dict)
    # Where the action is offered: "power" in the VM's action bar; other groups have their own forms.
    group: str = "power"
    # Validates untrusted parameters against the VM and returns what the handler receives;
    # None for the power actions, whose few parameters `action_check_params` knows.
    check: Callable[[VirtualMachine, dict[str, Any]], dict[str, Any]] | None = None
    # The access action checked on top of "vm.act" (see kvmweb/access.py), for what owners may not do.
    requires: str = ""

    @property
    def kind(self) -> str:
        return f"vm.{self.name}"

    def refusal(self, vm: VirtualMachine) -> str:
        hint = self.hints.get(vm.state)
        if hint:
            return f"Cannot {self.verb}: " + hint.format(name=vm.name)
        return f"Cannot {self.verb}: {vm.name} is {vm.get_state_display().lower()}."

    def for_vm(self, vm: VirtualMachine | None) -> ActionSpec:
        name = vm.name if vm is not None else "the selected VMs"
        label = "Restore" if self.name == "start" and vm is not None and vm.has_managed_save else self.label
        icon = "history" if label == "Restore" else self.icon
        return replace(self, label=label, icon=icon, confirm=self.confirm.format(name=name))


_WHEN_BACK = "The action comes back once kvmweb reaches the host again."
_PAUSED_NO_ACPI = (
    "{name} is paused, and a paused guest cannot react to ACPI or its agent. Resume it first, or use Force off."
)

ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("start", "Start", "player-play", "start", frozenset({S.SHUTOFF, S.CRASHED})),
        ActionSpec(
            "shutdown",
            "Shut down",
            "power",
            "shut down",
            RUNNING,
            params=("mode", "timeout"),
            hints={S.PAUSED: _PAUSED_NO_ACPI},
        ),
        ActionSpec(
            "reboot", "Reboot", "refresh", "reboot", RUNNING, params=("mode",), hints={S.PAUSED: _PAUSED_NO_ACPI}
        ),
        ActionSpec(
            "force-off",
            "Force off",
            "plug-connected-x",
            "force off",
            ACTIVE,
            danger=True,
            confirm="Force off {name}? This pulls the plug: anything the guest has not written to disk is lost.",
        ),
        ActionSpec("suspend", "Pause", "player-pause", "pause", RUNNING),
        ActionSpec("resume", "Resume", "player-play", "resume", frozenset({S.PAUSED})),
        ActionSpec("save", "Save state", "device-floppy", "save", RUNNING | {S.PAUSED}),
        ActionSpec(
            "discard-save",
            "Discard saved state",
            "trash",
            "discard the saved state",
            frozenset({S.SHUTOFF}),
            danger=True,
            confirm="Discard the saved state of {name}? Its next start boots afresh; the saved memory is lost.",
        ),
        ActionSpec("autostart-on", "Autostart on", "bolt", "turn on autostart", ANY_STATE),
        ActionSpec("autostart-off", "Autostart off", "bolt-off", "turn off autostart", ANY_STATE),
        ActionSpec("ctrl-alt-del", "Send Ctrl+Alt+Del", "keyboard", "send Ctrl+Alt+Del", RUNNING),
    )
}


def action_register(spec: ActionSpec) -> ActionSpec:
    """Add an action defined next to its handler (delete, clone, hardware edits) to the table."""
    ACTIONS[spec.name] = spec
    return spec


BULK_ACTIONS = ("start", "shutdown", "reboot", "force-off", "suspend", "resume")


@dataclass(frozen=True, slots=True)
class BulkResult:
    operations: list[Operation]
    refused: list[tuple[VirtualMachine, str]]


def action_spec(action: str) -> ActionSpec:
    spec = ACTIONS.get(action)
    if spec is None:
        raise Invalid(f"Unknown VM action {action!r}; VMs support: {', '.join(ACTIONS)}.", details={"action": action})
    return spec


def action_refusal(vm: VirtualMachine, spec: ActionSpec) -> str | None:
    """Why `spec` cannot run on `vm` as last observed, or None when it can."""
    if vm.state == S.GONE:
        return f"Cannot {spec.verb}: {vm.name} is no longer on its host."
    if not vm.host.enabled:
        return f"Cannot {spec.verb}: its host {vm.host.name} is disabled."
    if vm.host.state == vm.host.State.UNREACHABLE:
        return f"Cannot {spec.verb}: its host {vm.host.name} is unreachable. {_WHEN_BACK}"
    if vm.state not in spec.states:
        return spec.refusal(vm)
    if spec.name == "discard-save" and not vm.has_managed_save:
        return f"Cannot {spec.verb}: {vm.name} has no saved state."
    if spec.name in ("autostart-on", "autostart-off"):
        if not vm.persistent:
            return f"Cannot {spec.verb}: {vm.name} is transient (it has no definition on the host to start from)."
        if vm.autostart == (spec.name == "autostart-on"):
            return f"Cannot {spec.verb}: it is already {'on' if vm.autostart else 'off'} for {vm.name}."
    return None


def allowed_actions(vm: VirtualMachine, group: str = "power") -> list[ActionSpec]:
    """The actions `vm`'s state allows now, worded for it (Start reads Restore after a managed save)."""
    return [spec.for_vm(vm) for spec in ACTIONS.values() if spec.group == group and action_refusal(vm, spec) is None]


def bulk_actions() -> list[ActionSpec]:
    return [ACTIONS[name].for_vm(None) for name in BULK_ACTIONS]


def action_check_params(spec: ActionSpec, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate untrusted parameters; returns the full set the handler receives."""
    # "confirm" is the page's own "I understand" box, already honoured by the time a request gets here.
    given = {key: value for key, value in (params or {}).items() if value not in (None, "") and key != "confirm"}
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        accepted = ", ".join(spec.params) or "none"
        raise Invalid(
            f"{spec.label} takes no parameter {', '.join(unknown)}; it accepts: {accepted}.",
            details={key: "Not accepted." for key in unknown},
        )
    clean: dict[str, Any] = {}
    if "mode" in spec.params:
        mode = str(given.get("mode", "auto"))
        if mode not in SHUTDOWN_MODES:
            message = f"Unknown mode {mode!r}; use auto, acpi or agent."
            raise Invalid(message, details={"mode": "Use auto, acpi or agent."})
        clean["mode"] = mode
    if "timeout" in spec.params:
        raw = given.get("timeout", settings.KVMWEB_SHUTDOWN_TIMEOUT)
        try:
            timeout = int(raw)
        except (TypeError, ValueError):
            timeout = 0
        if isinstance(raw, bool) or not 1 <= timeout <= MAX_SHUTDOWN_TIMEOUT:
            message = f"The timeout is a whole number of seconds from 1 to {MAX_SHUTDOWN_TIMEOUT}."
            raise Invalid(message, details={"timeout": message})
        clean["timeout"] = timeout
    return clean


def vm_for_action(*, actor: Actor, uuid: UUID | str) -> VirtualMachine:
    """The VM `actor` may act on: NotVisible (404) if they may not see it, Forbidden if they may not act.

    Both refusals are audited, the unseen one too (with the UUID asked for, and no name to leak).
    """
    user = actor.user if actor.user is not None else AnonymousUser()
    try:
        vm = selectors.vm_get(user, uuid)
    except NotVisible as exc:
        unseen = Target("vm", str(uuid), "")
        denied = AuditEvent.Outcome.DENIED
        audit_record(actor=actor, action="vm.act", target=unseen, outcome=denied, message=exc.message)
        raise
    access.authorize(actor, "vm.act", vm, target=vm.as_target())
    return vm


def vm_action(*, actor: Actor, vm: VirtualMachine, action: str, params: Mapping[str, Any] | None = None) -> Operation:
    """Queue `action` on `vm` for a worker. The caller has checked access (`access.authorize`, "vm.act").

    Raises Invalid for an unknown action or bad parameters, Conflict when the VM's state (or
    another active operation on it) does not allow the action now.
    """
    spec = action_spec(action)
    clean = _checked(actor, vm, spec, params)
    return operation_start(kind=spec.kind, target=vm.as_target(), actor=actor, params=clean, queue=vm.host.task_queue)


def _checked(actor: Actor, vm: VirtualMachine, spec: ActionSpec, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters `spec`'s handler receives for `vm`; raises (audited) when it cannot run on `vm` now."""
    if spec.requires:
        access.authorize(actor, spec.requires, vm, target=vm.as_target())
    clean = action_check_params(spec, params) if spec.check is None else {}
    reason = action_refusal(vm, spec)
    if reason is not None:
        audit_record(
            actor=actor, action=spec.kind, target=vm.as_target(), outcome=AuditEvent.Outcome.FAILED, message=reason
        )
        raise Conflict(reason, details={"state": vm.state, "action": spec.name})
    if spec.check is not None:
        clean = spec.check(vm, {key: value for key, value in (params or {}).items() if value is not None})
    return clean


def vm_bulk_action(
    *, actor: Actor, vms: Iterable[VirtualMachine], action: str, params: Mapping[str, Any] | None = None
) -> BulkResult:
    """One operation per VM (workers run them in parallel); each refusal is collected, never all-or-nothing.

    Access is checked here for each VM, through `access.authorize`, so every refusal is audited.
    """
    spec = action_spec(action)
    if spec.name not in BULK_ACTIONS:
        raise Invalid(f"{spec.label} runs on one VM at a time.", details={"action": spec.name})
    action_check_params(spec, params)  # a bad parameter is the request's fault: refuse it whole
    refused: list[tuple[VirtualMachine, str]] = []
    ready: list[tuple[VirtualMachine, OperationRequest]] = []
    # One commit for the batch's operations, not one per VM (each costs a disk sync), and its task messages
    # sent together. Not inside a transaction of its own: operations_start's would then be a savepoint, two
    # more round trips while the request holds its operations back from the workers. A refusal's audit
    # event is written on its own.
    with operations_queued_together():
        for vm in vms:
            try:
                ready.append((vm, _bulk_request(actor, vm, spec, params)))
            except KvmwebError as exc:
                refused.append((vm, exc.message))
        started = operations_start(kind=spec.kind, requests=[request for _, request in ready], actor=actor)
    operations = [outcome for outcome in started if isinstance(outcome, Operation)]
    refused += [
        (vm, outcome.message) for (vm, _), outcome in zip(ready, started, strict=True) if isinstance(outcome, Conflict)
    ]
    return BulkResult(operations=operations, refused=refused)


def _bulk_request(
    actor: Actor, vm: VirtualMachine, spec: ActionSpec, params: Mapping[str, Any] | None
) -> OperationRequest:
    try:
        access.authorize(actor, "vm.act", vm, target=vm.as_target())
    except (Forbidden, NotVisible) as exc:
        raise Forbidden(f"Cannot {spec.verb} {vm.name}: {exc.message}") from None
    return OperationRequest(vm.as_target(), _checked(actor, vm, spec, params), vm.host.task_queue)
