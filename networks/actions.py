"""Managing virtual networks: one action table and one service shared by the pages and the API.

`network_define` and `network_action` check untrusted input (networks/checks.py) and the network's
last observed state, then queue an operation (`network.<action>`); the worker runs it below, makes
the network's row match what the host reports and publishes `network.state`. Administrators only
("network.manage").

Undefine is refused while running VMs use the network (as last observed), naming them; the worker
asks the host again before it undefines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from hosts.models import Host
from kvmweb import access, virt
from kvmweb.actors import Actor
from kvmweb.audit.models import AuditEvent
from kvmweb.audit.services import audit_record
from kvmweb.errors import Conflict, Invalid
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress, operation_start
from kvmweb.realtime import groups
from kvmweb.realtime.publish import publish
from kvmweb.targets import Target
from kvmweb.virt import networks as virt_networks
from kvmweb.virt.xml import NicInfo, domain_devices
from kvmweb.virt.xml.network_spec import check_network_xml
from networks.checks import network_check_define, network_spec_from
from networks.models import Network
from networks.services import network_apply_record
from vms.models import VirtualMachine

MAX_XML_CHARS = 65536


@dataclass(frozen=True, slots=True)
class NetworkAction:
    name: str
    label: str
    icon: str
    verb: str
    active: bool | None  # the state (as last observed) it runs in; None: either
    danger: bool = False

    @property
    def kind(self) -> str:
        return f"network.{self.name}"


NETWORK_ACTIONS: dict[str, NetworkAction] = {
    a.name: a
    for a in (
        NetworkAction("start", "Start", "player-play", "start", False),
        NetworkAction("stop", "Stop", "player-stop", "stop", True, danger=True),
        NetworkAction("autostart-on", "Autostart on", "bolt", "turn on autostart", None),
        NetworkAction("autostart-off", "Autostart off", "bolt-off", "turn off autostart", None),
        NetworkAction("undefine", "Undefine", "trash", "undefine", None, danger=True),
        NetworkAction("define-xml", "Apply XML", "file-code", "apply the XML", None),
    )
}


def network_target(network: Network) -> Target:
    return Target("network", str(network.pk), network.name)


def network_publish(network: Network) -> None:
    from hosts.watcher.apply import network_payload

    publish([groups.ADMINS, groups.host_group(network.host_id)], network_payload(network))


# Who uses a network


def _uses(nics: Iterable[NicInfo], network: Network) -> bool:
    for nic in nics:
        if nic.type == "network" and nic.source == network.name:
            return True
        if nic.type == "bridge" and network.bridge and nic.source == network.bridge:
            return True
    return False


def network_vms(network: Network) -> list[tuple[VirtualMachine, list[Any]]]:
    """The VMs on the network's host (as last observed) with a NIC on it, each with those NICs."""
    found = []
    vms = (
        VirtualMachine.objects.filter(host_id=network.host_id).exclude(state=VirtualMachine.State.GONE).exclude(xml="")
    )
    for vm in vms.order_by("name"):
        try:
            nics = domain_devices(vm.xml).nics
        except virt.VirtError:
            continue
        mine = [nic for nic in nics if _uses([nic], network)]
        if mine:
            found.append((vm, mine))
    return found


def network_users(network: Network) -> list[str]:
    """Names of the running (active) VMs using the network, as last observed."""
    from vms.actions import ACTIVE

    return [vm.name for vm, _ in network_vms(network) if vm.state in ACTIVE]


def _users_on_host(network: Network, host: Host) -> list[str]:
    """`network_users`, fresh from the host: undefining is no place for a stale view."""
    inventory = virt.get_inventory(host.virt_target())
    return [
        d.name
        for d in inventory.domains
        if d.state not in ("shutoff", "nostate") and d.xml and _uses(domain_devices(d.xml).nics, network)
    ]


# Checks


def _refuse_host_state(host: Host, verb: str) -> str | None:
    if not host.enabled:
        return f"Cannot {verb}: the host {host.name} is disabled."
    if host.state == Host.State.UNREACHABLE:
        return f"Cannot {verb}: the host {host.name} is unreachable."
    return None


def network_action_refusal(network: Network, spec: NetworkAction) -> str | None:
    """Why `spec` cannot run on `network` as last observed, or None when it can."""
    if network.gone_since is not None:
        return f"Cannot {spec.verb}: {network.name} is no longer on its host."
    reason = _refuse_host_state(network.host, spec.verb)
    if reason:
        return reason
    if spec.active is not None and network.active != spec.active:
        return f"Cannot {spec.verb}: {network.name} is {'active' if network.active else 'inactive'}."
    if spec.name in ("autostart-on", "autostart-off", "define-xml") and not network.persistent:
        return f"Cannot {spec.verb}: {network.name} is transient."
    if spec.name in ("autostart-on", "autostart-off") and network.autostart == (spec.name == "autostart-on"):
        return f"Cannot {spec.verb}: it is already {'on' if network.autostart else 'off'} for {network.name}."
    return None


def allowed_network_actions(network: Network) -> dict[str, NetworkAction]:
    return {name: spec for name, spec in NETWORK_ACTIONS.items() if network_action_refusal(network, spec) is None}


def _check_params(network: Network, spec: NetworkAction, given: Mapping[str, Any]) -> dict[str, Any]:
    if spec.name == "undefine":
        users = network_users(network)
        if users:
            raise Conflict(
                f"Cannot undefine {network.name}: running VMs use it: {', '.join(users)}. Shut them down or move "
                "their NICs first.",
                details={"vms": users},
            )
    if spec.name == "define-xml":
        return {"xml": check_define_xml(network, given.get("xml"))}
    return {}


def check_define_xml(network: Network, xml: Any) -> str:
    """The edited definition if kvmweb may send it to libvirt for `network`, else Invalid (details: xml)."""
    if not isinstance(xml, str) or not xml.strip():
        raise Invalid("Send the network's XML: the definition is empty.", details={"xml": "Empty."})
    if len(xml) > MAX_XML_CHARS:
        raise Invalid(f"The XML is longer than {MAX_XML_CHARS} characters.", details={"xml": "Too long."})
    try:
        name = check_network_xml(xml)
    except virt.VirtError as exc:
        raise Invalid(exc.message, details={"xml": exc.message}) from exc
    if name != network.name:
        message = f"The <name> must stay {network.name}: another name would define a different network."
        raise Invalid(message, details={"xml": message})
    return xml


# Services


def network_define(*, actor: Actor, host: Host, data: Mapping[str, Any]) -> Operation:
    """Queue defining (and optionally starting, autostarting) a new network on `host` (administrators only)."""
    access.authorize(actor, "network.manage", target=host.as_target())
    try:
        params = network_check_define(host, data)
        reason = _refuse_host_state(host, "define a network")
        if reason:
            raise Conflict(reason)
    except (Conflict, Invalid) as exc:
        target = Target("network", f"{host.pk}:{data.get('name') or ''}", str(data.get("name") or ""))
        audit_record(
            actor=actor, action="network.define", target=target, outcome=AuditEvent.Outcome.FAILED, message=exc.message
        )
        raise
    target = Target("network", f"{host.pk}:{params['name']}", params["name"])
    return operation_start(kind="network.define", target=target, actor=actor, params=params, queue=host.task_queue)


def network_action(
    *, actor: Actor, network: Network, action: str, params: Mapping[str, Any] | None = None
) -> Operation:
    """Queue `action` on `network`. Raises Invalid (unknown action, bad parameters) or Conflict (state, users)."""
    access.authorize(actor, "network.manage", target=network_target(network))
    spec = NETWORK_ACTIONS.get(action)
    if spec is None:
        message = f"Unknown network action {action!r}; networks support: {', '.join(NETWORK_ACTIONS)}."
        raise Invalid(message, details={"action": action})
    try:
        reason = network_action_refusal(network, spec)
        if reason is not None:
            raise Conflict(reason, details={"active": network.active, "action": spec.name})
        clean = _check_params(network, spec, dict(params or {}))
    except (Conflict, Invalid) as exc:
        outcome = AuditEvent.Outcome.FAILED
        audit_record(
            actor=actor, action=spec.kind, target=network_target(network), outcome=outcome, message=exc.message
        )
        raise
    queue = network.host.task_queue
    return operation_start(kind=spec.kind, target=network_target(network), actor=actor, params=clean, queue=queue)


# Operation handlers (run by a worker)


def network_sync(host: Host, uuid: str) -> Network | None:
    """Make the network's row match the host, and push the change to browsers."""
    try:
        record: virt.NetworkRecord | None = virt.get_network_record(host.virt_target(), uuid)
    except virt.NotFound:
        record = None
    network_apply_record(host=host, uuid=uuid, record=record, now=timezone.now())
    row = Network.objects.filter(host=host, uuid=uuid).first()
    if row is not None:
        network_publish(row)
    return row


def _network_for_operation(op: Operation) -> tuple[Network, Host]:
    network = Network.objects.select_related("host").filter(pk=op.target_id).first()
    if network is None or network.gone_since is not None:
        raise Invalid(f"{op.target_label} is no longer on its host.")
    return network, network.host


def _define(op: Operation, progress: Progress) -> dict[str, Any]:
    host = Host.objects.get(pk=op.params["host"])
    target = host.virt_target()
    if op.params.get("warning"):  # what the checks could not confirm: kept in the operation's log
        progress(10, str(op.params["warning"]))
    progress(20, f"Defining {op.params['name']} on {host.name}")
    if op.params.get("mode") == "xml":
        record = virt_networks.define_network(target, str(op.params["xml"]))
    else:
        record = virt_networks.define_network(target, network_spec_from(op.params))
    if op.params.get("autostart"):
        progress(50, f"Turning on autostart for {record.name}")
        virt_networks.set_network_autostart(target, record.uuid, True)
    if op.params.get("start"):
        progress(70, f"Starting {record.name}")
        virt_networks.start_network(target, record.uuid)
    row = network_sync(host, record.uuid)
    return {"network": row.pk if row else None, "uuid": record.uuid}


def _simple(call: str) -> Any:
    def handler(op: Operation, progress: Progress) -> dict[str, Any]:
        network, host = _network_for_operation(op)
        target, uuid = host.virt_target(), str(network.uuid)
        progress(20, f"{NETWORK_ACTIONS[call].label}: {network.name}")
        if call == "start":
            virt_networks.start_network(target, uuid)
        elif call == "stop":
            virt_networks.stop_network(target, uuid)
        elif call == "define-xml":
            virt_networks.redefine_network(target, uuid, str(op.params.get("xml", "")))
        else:
            virt_networks.set_network_autostart(target, uuid, call == "autostart-on")
        row = network_sync(host, uuid)
        result: dict[str, Any] = {"network": network.pk, "active": row.active if row else False}
        if call == "define-xml" and row is not None and row.active:
            result["note"] = "Saved. The running network keeps its current setup until it is stopped and started again."
        return result

    return handler


def _undefine(op: Operation, progress: Progress) -> dict[str, Any]:
    network, host = _network_for_operation(op)
    users = _users_on_host(network, host)
    if users:  # a VM may have started on it since the request was accepted
        raise Invalid(f"Cannot undefine {network.name}: running VMs use it: {', '.join(users)}.")
    progress(20, f"Undefining {network.name}")
    virt_networks.undefine_network(host.virt_target(), str(network.uuid))
    network_sync(host, str(network.uuid))
    return {"network": network.pk}


operation_kind("network.define", label="Define network", deadline_seconds=300, retry_transient=False)(_define)
for _name in ("start", "stop", "autostart-on", "autostart-off", "define-xml"):
    operation_kind(
        f"network.{_name}",
        label=f"Network: {NETWORK_ACTIONS[_name].label.lower()}",
        deadline_seconds=300,
        retry_transient=_name != "define-xml",
    )(_simple(_name))
operation_kind("network.undefine", label="Undefine network", deadline_seconds=300, retry_transient=False)(_undefine)
