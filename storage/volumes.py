"""Volumes: create, resize, clone (and convert raw<->qcow2), wipe and delete, as operations.

`volume_create` and `volume_action` validate untrusted input against the rows the inventory keeps,
before any libvirt call, and queue an operation `volume.<action>`; the handlers below run it on a
worker and make the rows match the host afterwards. Storage is administrators' business
("storage.manage" in kvmweb/access.py); members of a host may look, not change.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from hosts.models import Host
from kvmweb import access, virt
from kvmweb.actors import Actor
from kvmweb.errors import Conflict, Invalid, NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress, operation_start
from kvmweb.targets import Target
from kvmweb.virt import devices, secrets, volume_compress, volumes
from kvmweb.virt.xml import VolumeSpec, domain_devices
from kvmweb.virt.xml.volume_spec import MAX_CAPACITY, MIN_CAPACITY, human_size
from storage.models import StoragePool, Volume
from storage.services import storage_apply_inventory, volume_forget
from vms.models import VirtualMachine

User = AbstractBaseUser | AnonymousUser
MANAGE = "storage.manage"
UNITS = {"MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
FORMATS = ("raw", "qcow2")
# Pools whose volumes are files: the host reads an image's format from its data when it rescans them,
# and a LUKS-in-qcow2 image can be made in them.
FILE_POOL_TYPES = ("dir", "fs", "netfs")
PROVISIONING = {
    "thin": "Thin: takes space only as data is written (a sparse raw file, or qcow2 without preallocation).",
    "metadata": "Metadata: qcow2 with its tables written up front; data space is still taken as written.",
    "full": "Full (thick): every byte is reserved on disk now, so the guest can never hit a full pool.",
}
SOURCE_KEPT = (
    "The source volume was kept: kvmweb never removes it on its own. Delete it yourself if you no longer need it."
)


# Reads


def volume_list(user: User, *, pool_id: int | None = None) -> QuerySet[Volume]:
    vols = Volume.objects.filter(pool__in=access.visible_pools(user)).select_related("pool", "pool__host")
    if pool_id is not None:
        vols = vols.filter(pool_id=pool_id)
    return vols.order_by("pool__host__name", "pool__name", "name")


def volume_get(user: User, volume_id: int) -> Volume:
    volume = volume_list(user).filter(pk=volume_id).first()
    if volume is None:
        raise NotVisible("No such volume.")
    return volume


def iso_list(user: User) -> QuerySet[Volume]:
    """Every ISO image the inventory knows in the pools of the hosts `user` sees."""
    isos = Q(name__iendswith=".iso") | Q(format="iso")
    return volume_list(user).filter(isos, pool__gone_since__isnull=True)


def volume_users(volume: Volume) -> list[str]:
    """Who needs this volume, in words: the VMs listing it as a disk or CD-ROM, and the volumes
    built on it (backing file). Read from the rows the inventory keeps."""
    users: list[str] = []
    if not volume.path:
        return users
    host_id = volume.pool.host_id
    for name, xml in VirtualMachine.objects.filter(host_id=host_id).exclude(state="gone").values_list("name", "xml"):
        if xml and _lists(xml, volume):
            users.append(f"VM {name}")
    for name in Volume.objects.filter(pool__host_id=host_id, backing_path=volume.path).values_list("name", flat=True):
        users.append(f"volume {name} (backing file)")
    return users


def running_disk_user(volume: Volume) -> tuple[VirtualMachine, str] | None:
    """A running VM on the volume's host with it as a disk, and the disk's target device."""
    for vm in VirtualMachine.objects.filter(host_id=volume.pool.host_id, state__in=("running", "blocked", "paused")):
        if not vm.xml:
            continue
        for disk in domain_devices(vm.xml).disks:
            if disk.device == "disk" and _is(disk.source_path, disk.source_pool, disk.source_volume, volume):
                return vm, disk.target_dev
    return None


def backing_chain(volume: Volume) -> list[dict[str, str]]:
    """The chain below `volume` as the rows know it, nearest first: path, and the row's id when known."""
    chain: list[dict[str, str]] = []
    seen, below = {volume.path}, volume.backing_path
    rows = {v.path: v for v in Volume.objects.filter(pool__host_id=volume.pool.host_id).exclude(path="")}
    while below and below not in seen and len(chain) < 16:
        seen.add(below)
        row = rows.get(below)
        chain.append({"path": below, "id": str(row.pk) if row else "", "format": row.format if row else ""})
        below = row.backing_path if row else ""
    return chain


def _lists(xml: str, volume: Volume) -> bool:
    return any(_is(d.source_path, d.source_pool, d.source_volume, volume) for d in domain_devices(xml).disks)


def _is(path: str | None, pool: str | None, name: str | None, volume: Volume) -> bool:
    return bool(path and path == volume.path) or (pool == volume.pool.name and name == volume.name)


# Checks of untrusted input


def check_name(field: str, value: Any) -> str:
    name = str(value or "").strip()
    if not name:
        raise Invalid(f"Give the volume a {field}.", details={field: "Required."})
    if "/" in name or ".." in name:
        message = f"A volume name cannot contain '/' or '..'; got {name!r}."
        raise Invalid(message, details={field: message})
    try:
        VolumeSpec(name=name, capacity_bytes=MIN_CAPACITY)
    except virt.VirtError as exc:
        raise Invalid(exc.message, details={field: exc.message}) from None
    return name


def parse_size(value: Any, unit: Any) -> int:
    """A size and a unit (MiB, GiB, TiB) as bytes, from 1 MiB to 64 TiB."""
    unit = str(unit or "GiB")
    if unit not in UNITS:
        raise Invalid(f"Unknown unit {unit!r}; use MiB, GiB or TiB.", details={"unit": "MiB, GiB or TiB"})
    try:
        number = float(str(value))
    except ValueError:
        number = -1.0
    if isinstance(value, bool) or number != number or number <= 0:
        message = f"The size must be a positive number of {unit}; got {value!r}."
        raise Invalid(message, details={"size": message})
    size = int(number * UNITS[unit])
    if not MIN_CAPACITY <= size <= MAX_CAPACITY:
        message = f"A volume is from {human_size(MIN_CAPACITY)} to {human_size(MAX_CAPACITY)}; got {value} {unit}."
        raise Invalid(message, details={"size": message})
    return size


def check_format(value: Any, default: str) -> str:
    fmt = str(value or default)
    if fmt not in FORMATS:
        raise Invalid(f"Unknown format {fmt!r}; use raw or qcow2.", details={"format": "raw or qcow2"})
    return fmt


def _require_usable(pool: StoragePool) -> None:
    if pool.gone_since is not None or pool.state != "running":
        raise Conflict(f"Storage pool {pool.name} is not active; start it first.", details={"pool": pool.pk})
    host = pool.host
    if not host.enabled or host.state == Host.State.UNREACHABLE:
        raise Conflict(f"The host {host.name} is unreachable or disabled.", details={"host": host.pk})


def _require_space(pool: StoragePool, needed: int, what: str) -> None:
    if needed > pool.available:
        has = human_size(pool.available)
        message = f"Not enough space in pool {pool.name} for {what}: needs {human_size(needed)}, has {has}."
        raise Invalid(message, details={"size": message})


def _require_free_name(pool: StoragePool, name: str) -> None:
    if pool.volumes.filter(name=name).exists():
        message = f"Storage pool {pool.name} already has a volume named {name}."
        raise Conflict(message, details={"name": message})


# Services


def pool_for_change(*, actor: Actor, user: User, pool_id: Any) -> StoragePool:
    try:
        pk = int(str(pool_id))
    except ValueError:
        raise Invalid("Choose a storage pool.", details={"pool": "A pool id."}) from None
    pool = access.visible_pools(user).select_related("host").filter(pk=pk).first()
    if pool is None:
        raise NotVisible("No such storage pool.")
    access.authorize(actor, MANAGE, target=Target("pool", str(pool.pk), pool.name))
    return pool


def volume_for_action(*, actor: Actor, user: User, volume_id: int) -> Volume:
    volume = volume_get(user, volume_id)
    access.authorize(actor, MANAGE, target=volume_target(volume))
    return volume


def volume_target(volume: Volume) -> Target:
    return Target("volume", str(volume.pk), f"{volume.pool.name}/{volume.name}")


def new_volume_target(pool: StoragePool, name: str) -> Target:
    return Target("volume", f"new:{pool.pk}:{name}"[:64], f"{pool.name}/{name}")


@sensitive_variables("data", "passphrase")
def volume_create(*, actor: Actor, pool: StoragePool, data: Mapping[str, Any]) -> Operation:
    """Queue a new empty volume. The caller has authorized `actor` for the pool (`pool_for_change`).

    An encrypted one (`encrypted` with a `passphrase`) gets its libvirt secret here, in the request:
    only the secret's UUID goes into the operation, so the passphrase reaches no row, audit event,
    Celery message or log. The secret is removed again if the operation cannot be queued, and by
    the worker if creating the volume fails.
    """
    name = check_name("name", data.get("name"))
    size = parse_size(data.get("size"), data.get("unit"))
    fmt = check_format(data.get("format"), "qcow2")
    provisioning = str(data.get("provisioning") or "thin")
    if provisioning not in PROVISIONING:
        raise Invalid("Provisioning is thin, metadata or full.", details={"provisioning": "thin, metadata or full"})
    if provisioning == "metadata" and fmt != "qcow2":
        message = "Metadata preallocation only applies to qcow2; a raw volume is thin or full."
        raise Invalid(message, details={"provisioning": message})
    _require_usable(pool)
    _require_free_name(pool, name)
    if provisioning == "full":
        _require_space(pool, size, name)
    params = {"pool": pool.pk, "name": name, "capacity": size, "format": fmt, "provisioning": provisioning}
    if not _checked_flag(data.get("encrypted")):
        return operation_start(
            kind="volume.create",
            target=new_volume_target(pool, name),
            actor=actor,
            params=params,
            queue=pool.host.task_queue,
        )
    passphrase = _check_encryption(pool, fmt, data)
    secret = _define_secret(pool, name, passphrase)
    try:
        return operation_start(
            kind="volume.create",
            target=new_volume_target(pool, name),
            actor=actor,
            params={**params, "encryption": "luks", "secret": secret.uuid},
            queue=pool.host.task_queue,
        )
    except BaseException:
        _undefine_secret_quietly(pool.host, secret.uuid)
        raise


# Encryption: LUKS inside qcow2, the passphrase held by a libvirt secret on the host


def _checked_flag(value: Any) -> bool:
    return value not in (None, "", False, "false", "0", "off", "no")


@sensitive_variables("data", "passphrase")
def _check_encryption(pool: StoragePool, fmt: str, data: Mapping[str, Any]) -> str:
    """The passphrase, once the request is fit for encryption; messages never repeat it."""
    if fmt != "qcow2":
        message = "Only qcow2 volumes can be encrypted (LUKS inside qcow2); choose qcow2 or leave encryption off."
        raise Invalid(message, details={"format": message})
    if pool.type not in FILE_POOL_TYPES or not pool.target_path:
        kind = pool.type or "of unknown type"
        message = f"Storage pool {pool.name} is {kind}; encrypted volumes go in directory (file) pools."
        raise Invalid(message, details={"encrypted": message})
    passphrase = data.get("passphrase")
    try:
        passphrase = secrets.check_passphrase(passphrase if passphrase is not None else "")
    except virt.VirtError as exc:
        raise Invalid(exc.message, details={"passphrase": exc.message}) from None
    confirm = data.get("passphrase_confirm")
    if confirm is not None and confirm != passphrase:
        message = "The two passphrases differ; type the same one twice."
        raise Invalid(message, details={"passphrase_confirm": message})
    return passphrase


@sensitive_variables("passphrase")
def _define_secret(pool: StoragePool, name: str, passphrase: str) -> secrets.SecretRecord:
    """The one libvirt write a request makes: it keeps the passphrase out of the operation."""
    path = f"{pool.target_path.rstrip('/')}/{name}"
    try:
        return secrets.define_volume_secret(pool.host.virt_target(), path, passphrase)
    except virt.AlreadyExists as exc:
        raise Conflict(exc.message, details={"name": exc.message}) from None
    except virt.Unsupported as exc:
        message = f"The host {pool.host.name} cannot hold secrets, so it cannot encrypt volumes ({exc.message})."
        raise Conflict(message, details={"encrypted": message}) from None


def _undefine_secret_quietly(host: Host, uuid: str) -> str:
    """Remove a secret while another error propagates; a sentence for the error when that fails."""
    try:
        secrets.undefine_secret(host.virt_target(), uuid)
    except virt.VirtError as exc:
        return f" Its secret {uuid} could not be removed ({exc.message}); remove it on the host."
    return ""


@dataclass(frozen=True, slots=True)
class VolumeAction:
    name: str
    label: str
    check: Callable[[Volume, Mapping[str, Any]], dict[str, Any]]
    danger: bool = False

    @property
    def kind(self) -> str:
        return f"volume.{self.name}"


def _check_resize(volume: Volume, params: Mapping[str, Any]) -> dict[str, Any]:
    size = parse_size(params.get("size"), params.get("unit"))
    if size < volume.capacity:
        message = (
            f"{volume.name} is {human_size(volume.capacity)}; a volume can only grow, "
            f"and {human_size(size)} would cut off its end."
        )
        raise Invalid(message, details={"size": message})
    if size == volume.capacity:
        raise Invalid(f"{volume.name} is already {human_size(size)}.", details={"size": "Same size."})
    grow = size - volume.capacity
    if grow > volume.pool.available and volume.format == "raw" and volume.allocation >= volume.capacity:
        _require_space(volume.pool, grow, f"growing {volume.name}")
    return {"capacity": size}


def _check_clone(volume: Volume, params: Mapping[str, Any], *, convert: bool = False) -> dict[str, Any]:
    if volume.encryption:
        message = (
            f"{volume.name} is encrypted ({volume.encryption.upper()}); kvmweb does not copy or convert "
            "encrypted volumes, as the copy would need a secret of its own."
        )
        raise Invalid(message, details={"encryption": message})
    source_format = volume.format if volume.format in FORMATS else ""
    if not source_format:
        raise Invalid(
            f"{volume.name} is {volume.format or 'of unknown format'}; only raw and qcow2 volumes are copied."
        )
    other = "raw" if source_format == "qcow2" else "qcow2"
    fmt = check_format(params.get("format"), other if convert else source_format)
    if convert and fmt == source_format:
        message = f"{volume.name} is already {fmt}; converting it to the same format would only copy it."
        raise Invalid(message, details={"format": message})
    default = f"{volume.name.rsplit('.', 1)[0]}-copy.{fmt}"
    name = check_name("name", params.get("name") or default)
    pool = volume.pool
    if params.get("pool") not in (None, ""):
        pool = StoragePool.objects.filter(host_id=volume.pool.host_id, pk=_int(params.get("pool"))).first() or pool
        if pool.pk != _int(params.get("pool")):
            raise Invalid("Copy into a pool of the same host.", details={"pool": "Not a pool of this host."})
    _require_usable(pool)
    _require_free_name(pool, name)
    _require_space(pool, volume.allocation or volume.capacity, name)
    clean: dict[str, Any] = {"pool": pool.pk, "name": name, "format": fmt}
    if _checked_flag(params.get("compress")):
        _check_compress(volume, fmt, pool)
        clean["compress"] = True
    return clean


def _check_compress(volume: Volume, fmt: str, pool: StoragePool) -> None:
    if fmt != "qcow2":
        message = "Only a qcow2 copy can be compressed; choose qcow2, or leave compression off for a raw copy."
        raise Invalid(message, details={"compress": message})
    if volume.backing_path:
        message = (
            f"{volume.name} is built on a backing file, and a compressed copy is made from its own file alone. "
            "Copy it without compression first (that copy stands alone), then compress the copy."
        )
        raise Invalid(message, details={"compress": message})
    if pool.type not in FILE_POOL_TYPES:
        # The compressed image is uploaded as data; another pool would not see it as qcow2.
        kind = pool.type or "of unknown type"
        message = f"Storage pool {pool.name} is {kind}; compressed copies go in directory (file) pools."
        raise Invalid(message, details={"compress": message})


def _check_wipe(volume: Volume, params: Mapping[str, Any]) -> dict[str, Any]:
    if volume.encryption:
        # Zeros would take the LUKS header too, leaving a raw volume and a secret that guards nothing.
        message = (
            f"{volume.name} is encrypted; delete it instead: that removes its secret too, "
            "so nothing can read its data again."
        )
        raise Invalid(message, details={"encryption": message})
    _require_unused(volume, "wipe")
    _confirmed(volume, params)
    return {}


def _check_delete(volume: Volume, params: Mapping[str, Any]) -> dict[str, Any]:
    _require_unused(volume, "delete")
    _confirmed(volume, params)
    return {}


def _require_unused(volume: Volume, verb: str) -> None:
    users = volume_users(volume)
    if users:
        message = f"Cannot {verb} {volume.name}: it is used by {', '.join(users)}."
        raise Conflict(message, details={"users": users})


def _confirmed(volume: Volume, params: Mapping[str, Any]) -> None:
    if str(params.get("confirm") or "") != volume.name:
        message = f"Type the volume's name, {volume.name}, to confirm."
        raise Invalid(message, details={"confirm": message})


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return -1


ACTIONS: dict[str, VolumeAction] = {
    action.name: action
    for action in (
        VolumeAction("resize", "Resize", _check_resize),
        VolumeAction("clone", "Clone", _check_clone),
        VolumeAction("convert", "Convert", lambda volume, params: _check_clone(volume, params, convert=True)),
        VolumeAction("wipe", "Wipe", _check_wipe, danger=True),
        VolumeAction("delete", "Delete", _check_delete, danger=True),
    )
}


def volume_action(*, actor: Actor, volume: Volume, action: str, params: Mapping[str, Any] | None = None) -> Operation:
    """Queue `action` on `volume`; the caller has authorized `actor` (`volume_for_action`)."""
    spec = ACTIONS.get(action)
    if spec is None:
        raise Invalid(f"Unknown volume action {action!r}; volumes support: {', '.join(ACTIONS)}.")
    _require_usable(volume.pool)
    clean = spec.check(volume, params or {})
    kind = "volume.clone" if spec.name == "convert" else spec.kind
    return operation_start(
        kind=kind, target=volume_target(volume), actor=actor, params=clean, queue=volume.pool.host.task_queue
    )


# Handlers (the worker)


def _volume_of(op: Operation) -> Volume:
    volume = Volume.objects.select_related("pool", "pool__host").filter(pk=_int(op.target_id)).first()
    if volume is None or not volume.path:
        raise Invalid("The volume is no longer known; refresh the pool.")
    return volume


def refresh_host_storage(host: Host, pool: StoragePool | None = None) -> None:
    """Make the pool and volume rows match the host now (space included)."""
    target = host.virt_target()
    if pool is not None:
        with suppress(virt.VirtError):
            volumes.refresh_pool(target, pool.name)
    inventory = virt.get_inventory(target)
    storage_apply_inventory(host=host, pools=inventory.pools, volumes=inventory.volumes, now=timezone.now())


@operation_kind("volume.create", label="Create volume", deadline_seconds=3600, retry_transient=False)
def _create(op: Operation, progress: Progress) -> dict[str, Any]:
    pool = StoragePool.objects.select_related("host").get(pk=op.params["pool"])
    p = op.params
    secret = p.get("secret")
    encrypted = ", encrypted (LUKS)" if secret else ""
    try:
        spec = VolumeSpec(
            name=p["name"],
            capacity_bytes=p["capacity"],
            format=p["format"],
            allocation=p["provisioning"],
            encryption_secret=secret,
        )
        progress(10, f"Creating {spec.name} ({human_size(spec.capacity_bytes)}, {spec.allocation}{encrypted})")
        record = volumes.create_volume(pool.host.virt_target(), pool.name, spec)
    except virt.VirtError as exc:
        if not secret:
            raise
        # Nothing half-made: the volume is not there, so neither is the secret made for it.
        tail = _undefine_secret_quietly(pool.host, secret) or f" Its secret {secret} was removed again."
        raise type(exc)(f"{exc.message}{tail}", code=exc.code, raw=exc.raw) from exc
    refresh_host_storage(pool.host, pool)
    row = pool.volumes.filter(name=record.name).first()
    result = {"volume": row.pk if row else None, "path": record.path, "allocation": record.allocation}
    if secret:
        Volume.objects.filter(pool=pool, name=record.name).update(encryption="luks", secret_uuid=secret)
        result |= {"encryption": "luks", "secret": secret}
    return result


@operation_kind("volume.resize", label="Resize volume", deadline_seconds=900, retry_transient=False)
def _resize(op: Operation, progress: Progress) -> dict[str, Any]:
    volume = _volume_of(op)
    host, capacity = volume.pool.host, int(op.params["capacity"])
    user = running_disk_user(volume)
    if user is not None:
        vm, dev = user
        progress(20, f"Growing {dev} of the running VM {vm.name} to {human_size(capacity)}")
        devices.resize_disk(host.virt_target(), str(vm.uuid), dev, capacity)
        through = f"VM {vm.name}"
    else:
        progress(20, f"Growing {volume.name} to {human_size(capacity)}")
        volumes.resize_volume(host.virt_target(), volume.path, capacity)
        through = ""
    refresh_host_storage(host, volume.pool)
    return {"capacity": capacity, "through": through}


@operation_kind("volume.clone", label="Clone volume", deadline_seconds=6 * 3600, retry_transient=False)
def _clone(op: Operation, progress: Progress) -> dict[str, Any]:
    volume = _volume_of(op)
    pool = StoragePool.objects.select_related("host").get(pk=op.params["pool"])
    copy = _compressed_copy if op.params.get("compress") else _copy_on_host
    record = copy(op, volume, pool, progress)
    refresh_host_storage(pool.host, pool)
    row = pool.volumes.filter(name=record.name).first()
    return {"volume": row.pk if row else None, "path": record.path, "source": volume.pk, "note": SOURCE_KEPT}


def _copy_on_host(op: Operation, volume: Volume, pool: StoragePool, progress: Progress) -> virt.VolumeRecord:
    name, fmt = op.params["name"], op.params["format"]
    verb = f"Converting {volume.name} ({volume.format}) to {fmt}" if fmt != volume.format else f"Copying {volume.name}"

    def copied(done: int, total: int) -> None:
        progress(5 + int(90 * done / total) if total else 5, f"{verb}: {human_size(done)} of {human_size(total)}")

    progress(5, verb)
    return volumes.clone_volume(pool.host.virt_target(), pool.name, volume.path, name, format=fmt, progress=copied)


def _compressed_copy(op: Operation, volume: Volume, pool: StoragePool, progress: Progress) -> virt.VolumeRecord:
    """libvirt copies on the host but cannot compress, so this copy streams through the worker, whose
    temporary directory (TMPDIR) holds the source and its compressed image meanwhile."""
    return volume_compress.compressed_copy(
        pool.host.virt_target(),
        pool.name,
        volume.path,
        op.params["name"],
        work_dir=Path(tempfile.gettempdir()),
        progress=progress,
        timeout=(op.deadline - timezone.now()).total_seconds(),
    )


@operation_kind("volume.wipe", label="Wipe volume", deadline_seconds=6 * 3600, retry_transient=False)
def _wipe(op: Operation, progress: Progress) -> dict[str, Any]:
    volume = _volume_of(op)
    progress(10, f"Overwriting {volume.name} with zeros")
    volumes.wipe_volume(volume.pool.host.virt_target(), volume.path)
    refresh_host_storage(volume.pool.host, volume.pool)
    return {"path": volume.path}


@operation_kind("volume.delete", label="Delete volume", deadline_seconds=900, retry_transient=False)
def _delete(op: Operation, progress: Progress) -> dict[str, Any]:
    volume = _volume_of(op)
    users = volume_users(volume)  # once more: a VM may have started using it since the request
    if users:
        raise Conflict(f"Cannot delete {volume.name}: it is used by {', '.join(users)}.")
    progress(10, f"Deleting {volume.path}")
    target = volume.pool.host.virt_target()
    # Read before the volume goes: its <encryption> names the secret, which is removed only after it.
    secret = _secret_of(target, volume)
    deleted = volumes.delete_volume(target, volume.path)
    volume_forget(volume)
    if secret:
        progress(80, f"Removing the secret {secret} of {volume.name}")
        secrets.undefine_secret(target, secret)
    refresh_host_storage(volume.pool.host, volume.pool)
    return {"path": volume.path, "deleted": deleted, **({"secret_removed": secret} if secret else {})}


def _secret_of(target: virt.HostTarget, volume: Volume) -> str:
    """The UUID of the volume's secret: as the host's volume XML names it, else as kvmweb recorded it."""
    try:
        named = volumes.volume_encryption_secret(target, volume.path)
    except virt.NotFound:
        named = None
    return named or volume.secret_uuid
