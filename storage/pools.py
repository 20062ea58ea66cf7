"""Managing storage pools: one action table and one service shared by the pages and the API.

`pool_define` and `pool_action` check untrusted input and the pool's last observed state, then
queue an operation (`pool.<action>`); the worker runs it below, and afterwards makes the pool's
row and its volume rows match what the host reports. Administrators only ("pool.manage").

Undefine never deletes data unless `delete_contents` is chosen and confirmed with the pool's name.
It is refused while any VM on the host (as last observed) uses one of the pool's volumes.
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
from kvmweb.targets import Target
from kvmweb.virt import pools as virt_pools
from kvmweb.virt import volumes as virt_volumes
from kvmweb.virt.xml import PoolSpec, check_pool_xml, domain_devices
from storage.messages import pools_publish
from storage.models import StoragePool, Volume
from storage.services import pool_apply_record, pool_apply_volumes
from vms.models import VirtualMachine

POOL_TYPES = ("dir", "fs", "netfs", "logical", "iscsi", "xml")
SPEC_FIELDS = ("target_path", "source_format", "source_host", "source_dir", "source_name", "iqn")


@dataclass(frozen=True, slots=True)
class PoolAction:
    name: str
    label: str
    icon: str
    verb: str
    states: frozenset[str]  # the pool states (as last observed) it runs in
    danger: bool = False

    @property
    def kind(self) -> str:
        return f"pool.{self.name}"


_RUNNING = frozenset({"running", "degraded"})
_ACTIVE = frozenset({"running", "degraded", "building", "inaccessible"})
_ANY = frozenset({"running", "degraded", "building", "inaccessible", "inactive", ""})

POOL_ACTIONS: dict[str, PoolAction] = {
    a.name: a
    for a in (
        PoolAction("start", "Start", "player-play", "start", frozenset({"inactive"})),
        PoolAction("stop", "Stop", "player-stop", "stop", _ACTIVE),
        PoolAction("refresh", "Refresh", "refresh", "refresh", _RUNNING),
        PoolAction("build", "Build", "hammer", "build", frozenset({"inactive"})),
        PoolAction("autostart-on", "Autostart on", "bolt", "turn on autostart", _ANY),
        PoolAction("autostart-off", "Autostart off", "bolt-off", "turn off autostart", _ANY),
        PoolAction("undefine", "Undefine", "trash", "undefine", _ANY, danger=True),
    )
}


def pool_target(pool: StoragePool) -> Target:
    return Target("pool", str(pool.pk), pool.name)


# Checks (before anything reaches libvirt)


def _invalid(exc: virt.VirtError, field: str = "") -> Invalid:
    return Invalid(exc.message, details={field: exc.message} if field else None)


def pool_check_define(host: Host, data: Mapping[str, Any]) -> dict[str, Any]:
    """The operation's parameters for a new pool: a checked spec, or checked raw XML for any other type."""
    kind = str(data.get("type") or "")
    if kind not in POOL_TYPES:
        message = f"Choose a pool type: {', '.join(POOL_TYPES)}."
        raise Invalid(message, details={"type": message})
    if kind == "xml":
        xml = str(data.get("xml") or "")
        try:
            name = check_pool_xml(xml)
        except virt.VirtError as exc:
            raise _invalid(exc, "xml") from exc
        params: dict[str, Any] = {"xml": xml}
    else:
        spec = pool_spec_from(kind, data)
        name, params = spec.name, {"spec": _spec_params(spec)}
    _refuse_host_state(host, "define a pool")
    if StoragePool.objects.filter(host=host, name=name, gone_since__isnull=True).exists():
        message = f"{host.name} already has a storage pool named {name}."
        raise Conflict(message, details={"name": message})
    return {"host": host.pk, "name": name, **params}


def pool_spec_from(kind: str, data: Mapping[str, Any]) -> PoolSpec:
    devices = data.get("source_devices") or ()
    if isinstance(devices, str):
        devices = [line.strip() for line in devices.splitlines() if line.strip()]
    values = {key: (str(data[key]).strip() or None) if data.get(key) not in (None, "") else None for key in SPEC_FIELDS}
    try:
        return PoolSpec(
            name=str(data.get("name") or "").strip(),
            type=kind,  # type: ignore[arg-type]  # PoolSpec checks it
            source_devices=tuple(str(d) for d in devices),
            **values,
        )
    except virt.VirtError as exc:
        raise _invalid(exc) from exc


def _spec_params(spec: PoolSpec) -> dict[str, Any]:
    params: dict[str, Any] = {"name": spec.name, "type": spec.type, "source_devices": list(spec.source_devices)}
    params.update({key: getattr(spec, key) for key in SPEC_FIELDS})
    return params


def _refuse_host_state(host: Host, verb: str) -> None:
    if not host.enabled:
        raise Conflict(f"Cannot {verb}: the host {host.name} is disabled.")
    if host.state == Host.State.UNREACHABLE:
        raise Conflict(f"Cannot {verb}: the host {host.name} is unreachable.")


def pool_users(pool: StoragePool) -> list[str]:
    """Names of the VMs on the pool's host (as last observed) with a disk or CD-ROM in the pool."""
    paths = set(Volume.objects.filter(pool=pool).exclude(path="").values_list("path", flat=True))
    vms = VirtualMachine.objects.filter(host_id=pool.host_id).exclude(state=VirtualMachine.State.GONE)
    return _users(pool, paths, vms.exclude(xml="").order_by("name").values_list("name", "xml"))


def _users_on_host(pool: StoragePool, host: Host) -> list[str]:
    """`pool_users`, fresh from the host: deleting data is no place for a stale view."""
    inventory = virt.get_inventory(host.virt_target())
    paths = {vol.path for vol in inventory.volumes if vol.pool_uuid == str(pool.uuid) and vol.path}
    return _users(pool, paths, [(d.name, d.xml) for d in inventory.domains if d.xml])


def _users(pool: StoragePool, paths: set[str], domains: Iterable[tuple[str, str]]) -> list[str]:
    prefix = pool.target_path.rstrip("/") + "/" if pool.target_path else None
    users = []
    for name, xml in domains:
        for disk in domain_devices(xml).disks:
            path = disk.source_path or ""
            if disk.source_pool == pool.name or path in paths or (prefix and path.startswith(prefix)):
                users.append(name)
                break
    return users


def pool_action_refusal(pool: StoragePool, spec: PoolAction) -> str | None:
    """Why `spec` cannot run on `pool` as last observed, or None when it can."""
    if pool.gone_since is not None:
        return f"Cannot {spec.verb}: {pool.name} is no longer on its host."
    host = pool.host
    if not host.enabled:
        return f"Cannot {spec.verb}: its host {host.name} is disabled."
    if host.state == Host.State.UNREACHABLE:
        return f"Cannot {spec.verb}: its host {host.name} is unreachable."
    if pool.state not in spec.states:
        return f"Cannot {spec.verb}: {pool.name} is {pool.state or 'in an unknown state'}."
    if spec.name in ("autostart-on", "autostart-off"):
        if not pool.persistent:
            return f"Cannot {spec.verb}: {pool.name} is transient."
        if pool.autostart == (spec.name == "autostart-on"):
            return f"Cannot {spec.verb}: it is already {'on' if pool.autostart else 'off'} for {pool.name}."
    return None


def allowed_pool_actions(pool: StoragePool) -> list[PoolAction]:
    return [spec for spec in POOL_ACTIONS.values() if pool_action_refusal(pool, spec) is None]


def _check_undefine(pool: StoragePool, given: Mapping[str, Any]) -> dict[str, Any]:
    delete = given.get("delete_contents")
    delete_contents = delete is True or str(delete).lower() in ("1", "true", "on", "yes")
    if delete_contents and str(given.get("confirm") or "") != pool.name:
        message = f"Type the pool's name, {pool.name}, to confirm deleting its contents."
        raise Invalid(message, details={"confirm": message})
    users = pool_users(pool)
    if users:
        raise Conflict(
            f"Cannot undefine {pool.name}: it holds disks of {', '.join(users)}. Remove those disks or VMs first.",
            details={"vms": users},
        )
    return {"delete_contents": delete_contents}


# Services


def pool_define(*, actor: Actor, host: Host, data: Mapping[str, Any]) -> Operation:
    """Queue defining a new pool on `host` from form or API data (administrators only)."""
    access.authorize(actor, "pool.manage", target=host.as_target())
    params = pool_check_define(host, data)
    target = Target("pool", f"{host.pk}:{params['name']}", params["name"])
    return operation_start(kind="pool.define", target=target, actor=actor, params=params, queue=host.task_queue)


def pool_action(*, actor: Actor, pool: StoragePool, action: str, params: Mapping[str, Any] | None = None) -> Operation:
    """Queue `action` on `pool`. Raises Invalid (unknown action, bad parameters) or Conflict (state, users)."""
    access.authorize(actor, "pool.manage", target=pool_target(pool))
    spec = POOL_ACTIONS.get(action)
    if spec is None:
        message = f"Unknown pool action {action!r}; pools support: {', '.join(POOL_ACTIONS)}."
        raise Invalid(message, details={"action": action})
    given = dict(params or {})
    reason = pool_action_refusal(pool, spec)
    try:
        if reason is not None:
            raise Conflict(reason, details={"state": pool.state, "action": spec.name})
        clean = _check_undefine(pool, given) if spec.name == "undefine" else {}
    except (Conflict, Invalid) as exc:
        outcome = AuditEvent.Outcome.FAILED
        audit_record(actor=actor, action=spec.kind, target=pool_target(pool), outcome=outcome, message=exc.message)
        raise
    queue = pool.host.task_queue
    return operation_start(kind=spec.kind, target=pool_target(pool), actor=actor, params=clean, queue=queue)


# Operation handlers (run by a worker)


def _pool_for_operation(op: Operation) -> tuple[StoragePool, Host]:
    pool = StoragePool.objects.select_related("host").filter(pk=op.target_id).first()
    if pool is None or pool.gone_since is not None:
        raise Invalid(f"{op.target_label} is no longer on its host.")
    return pool, pool.host


def pool_sync(host: Host, uuid: str) -> StoragePool | None:
    """Make the pool's row and volume rows match the host, and push the change to browsers."""
    target = host.virt_target()
    try:
        record: virt.PoolRecord | None = virt.get_pool_record(target, uuid)
    except virt.NotFound:
        record = None
    pool_apply_record(host=host, uuid=uuid, record=record, now=timezone.now())
    row = StoragePool.objects.filter(host=host, uuid=uuid).first()
    if record is not None and record.state != "inactive" and row is not None:
        listed = virt.get_pool_volumes(target, uuid)
        pool_apply_volumes(host=host, uuid=uuid, volumes=listed)
        Volume.objects.filter(pool=row).exclude(name__in=[v.name for v in listed]).delete()
    if row is not None:
        pools_publish([row])
    return row


def _define(op: Operation, progress: Progress) -> dict[str, Any]:
    host = Host.objects.get(pk=op.params["host"])
    progress(20, f"Defining {op.params['name']} on {host.name}")
    if "xml" in op.params:
        record = virt_pools.define_pool(host.virt_target(), str(op.params["xml"]))
    else:
        given = dict(op.params["spec"])
        spec = PoolSpec(**{**given, "source_devices": tuple(given.get("source_devices") or ())})
        record = virt_pools.define_pool(host.virt_target(), spec)
    row = pool_sync(host, record.uuid)
    return {"pool": row.pk if row else None, "uuid": record.uuid}


def _simple(call: str) -> Any:
    def handler(op: Operation, progress: Progress) -> dict[str, Any]:
        pool, host = _pool_for_operation(op)
        target, uuid = host.virt_target(), str(pool.uuid)
        progress(20, f"{POOL_ACTIONS[call].label}: {pool.name}")
        if call == "start":
            virt_pools.start_pool(target, uuid)
        elif call == "stop":
            virt_pools.stop_pool(target, uuid)
        elif call == "build":
            virt_pools.build_pool(target, uuid)
        elif call == "refresh":
            virt_volumes.refresh_pool(target, pool.name)
        else:
            virt_pools.set_pool_autostart(target, uuid, call == "autostart-on")
        row = pool_sync(host, uuid)
        return {"pool": pool.pk, "state": row.state if row else ""}

    return handler


def _undefine(op: Operation, progress: Progress) -> dict[str, Any]:
    pool, host = _pool_for_operation(op)
    delete_contents = bool(op.params.get("delete_contents"))
    users = _users_on_host(pool, host)
    if users:  # a VM may have been given one of its disks since the request was accepted
        raise Invalid(f"Cannot undefine {pool.name}: it holds disks of {', '.join(users)}.")
    what = "and deleting its volumes and storage" if delete_contents else "(its data stays on the host)"
    progress(20, f"Undefining {pool.name} {what}")
    deleted = virt_pools.undefine_pool(host.virt_target(), str(pool.uuid), delete_contents=delete_contents)
    pool_sync(host, str(pool.uuid))
    return {"pool": pool.pk, "deleted": deleted}


operation_kind("pool.define", label="Define pool", deadline_seconds=300, retry_transient=False)(_define)
for _name in ("start", "stop", "build", "refresh", "autostart-on", "autostart-off"):
    operation_kind(f"pool.{_name}", label=f"Pool: {POOL_ACTIONS[_name].label.lower()}", deadline_seconds=900)(
        _simple(_name)
    )
operation_kind("pool.undefine", label="Undefine pool", deadline_seconds=1800, retry_transient=False)(_undefine)
