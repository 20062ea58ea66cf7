"""Creating a VM: check a request (wizard form or API body) and queue it as one operation.

`create_plan` validates everything it can without libvirt, from what the database knows, and turns
the request into a `CreatePlan`: plain JSON the worker (vms/provision.py) carries out. Nothing
reaches a host until the plan is whole.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from hosts.models import Host
from kvmweb import access
from kvmweb.actors import Actor
from kvmweb.errors import Invalid, NotVisible
from kvmweb.operations.models import Operation
from kvmweb.operations.services import operation_start
from kvmweb.targets import Target
from networks.models import Network
from stats.models import StatSample
from storage.models import StoragePool, Volume
from vms.cloudinit import CloudInit, parse_ssh_keys
from vms.models import VirtualMachine

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
NAME_RULE = "Use letters, digits, '-', '_' and '.', up to 64 characters, not starting with '-' or '.'."
SOURCES = ("iso", "template", "cloud", "network", "kernel")
CLONE_MODES = ("linked", "full")
DISK_FORMATS = ("qcow2", "raw")
ALLOCATIONS = ("thin", "metadata", "full")
DISK_BUSES = ("virtio", "sata", "scsi")
NIC_MODELS = ("virtio", "e1000")
MIN_MEMORY_MIB = 16
MAX_DISK_MIB = 64 * 1024 * 1024  # 64 TiB
MAX_DISKS = 8
MAX_NICS = 8
MAX_DESCRIPTION = 4096
STATS_FRESH = timedelta(minutes=2)


@dataclass(frozen=True)
class DiskPlan:
    pool: str
    size_mib: int
    format: str = "qcow2"
    allocation: str = "thin"
    bus: str = "virtio"


@dataclass(frozen=True)
class CreatePlan:
    """A checked request. `source` holds host paths the worker needs (ISO, template disks, image)."""

    uuid: str
    name: str
    host: int
    vcpus: int
    memory_mib: int
    domain_type: str
    arch: str
    firmware: str
    source: dict[str, Any]
    disks: list[DiskPlan]
    nics: list[dict[str, str]]
    graphics: bool
    serial: bool
    guest_agent: bool
    description: str
    start: bool
    cloud_init: dict[str, Any] | None = None
    owner: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_params(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CreatePlan:
        values = dict(params)
        values["disks"] = [DiskPlan(**disk) for disk in values["disks"]]
        return cls(**values)


def vm_create(*, actor: Actor, data: Mapping[str, Any]) -> Operation:
    """Check `data` and queue a `vm.create` operation; the new VM is the operation's target."""
    plan = create_plan(actor=actor, data=data)
    target = Target("vm", plan.uuid, plan.name)
    queue = Host.objects.only("queue").get(pk=plan.host).task_queue
    return operation_start(kind="vm.create", target=target, actor=actor, params=plan.to_params(), queue=queue)


def create_plan(*, actor: Actor, data: Mapping[str, Any]) -> CreatePlan:
    """Validate a create request for `actor`; raises Invalid with per-field details, or NotVisible."""
    errors: dict[str, str] = {}
    name = _name(data, errors)
    vcpus = _int(data, "vcpus", 1, errors, low=1, high=1024)
    memory_mib = _int(data, "memory_mib", 1024, errors, low=MIN_MEMORY_MIB, high=16 * 1024 * 1024)
    host = _host(actor, data, memory_mib, errors)
    if host is None:
        raise Invalid(_summary(errors), details=errors)
    access.authorize(actor, "vm.create", host, target=host.as_target())
    _check_fits(host, vcpus, memory_mib, errors)
    if name and _name_taken(host, name):
        errors["name"] = f"{host.name} already has a VM named {name}."
    domain_type = _domain_type(host, str(data.get("virt_type") or "auto"), errors)
    firmware = _firmware(host, str(data.get("firmware") or "bios"), errors)
    source, cloud = _source(actor, host, data.get("source"), name, errors)
    disks = _disks(host, data.get("disks"), source, errors)
    nics = _nics(host, data.get("nics"), errors)
    description = str(data.get("description") or "")
    if len(description) > MAX_DESCRIPTION:
        errors["description"] = f"Keep the description under {MAX_DESCRIPTION} characters."
    if errors:
        raise Invalid(_summary(errors), details=errors)
    user = actor.user
    return CreatePlan(
        uuid=str(uuidlib.uuid4()),
        name=name,
        host=host.pk,
        vcpus=vcpus,
        memory_mib=memory_mib,
        domain_type=domain_type,
        arch=str(host.capability("arch") or "x86_64"),
        firmware=firmware,
        source=source,
        disks=disks,
        nics=nics,
        graphics=_flag(data, "graphics", True),
        serial=_flag(data, "serial", True),
        guest_agent=_flag(data, "guest_agent", True),
        description=description,
        start=_flag(data, "start", False),
        cloud_init=cloud,
        owner=user.pk if user is not None and user.is_authenticated else None,
    )


def _summary(errors: Mapping[str, str]) -> str:
    first = next(iter(errors.values()), "The request is not valid.")
    more = len(errors) - 1
    return first if more <= 0 else f"{first} (and {more} more problem{'s' if more > 1 else ''})"


def _name(data: Mapping[str, Any], errors: dict[str, str]) -> str:
    name = str(data.get("name") or "").strip()
    if not NAME.fullmatch(name):
        errors["name"] = f"{name!r} is not a valid VM name. {NAME_RULE}" if name else "Give the VM a name."
        return ""
    return name


def _int(
    data: Mapping[str, Any], key: str, default: int, errors: dict[str, str], *, low: int, high: int, where: str = ""
) -> int:
    raw = data.get(key, default)
    try:
        value = int(raw)
        exact = not isinstance(raw, bool) and float(raw) == value
    except (TypeError, ValueError):
        value, exact = 0, False
    if not exact or not low <= value <= high:
        errors[where or key] = f"{key.replace('_', ' ')} must be a whole number from {low} to {high}."
    return value


def _flag(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if isinstance(value, str):
        return value.lower() in ("1", "true", "on", "yes")
    return bool(value)


def _host(actor: Actor, data: Mapping[str, Any], memory_mib: int, errors: dict[str, str]) -> Host | None:
    """The chosen host, or for "auto" the visible enabled host with the most free memory."""
    user = actor.user
    hosts = access.visible_hosts(user).filter(enabled=True) if user is not None else Host.objects.none()
    raw = data.get("host", "auto")
    if raw in (None, "", "auto"):
        wanted = str(data.get("virt_type") or "auto")
        choice = pick_host(list(hosts), wanted)
        if choice is None:
            errors["host"] = "No connected host you may use can run this VM; choose a host."
        return choice
    try:
        host = hosts.filter(pk=int(raw)).first()
    except (TypeError, ValueError):
        host = None
    if host is None:
        raise NotVisible("No such host.")
    if host.state != Host.State.CONNECTED:
        errors["host"] = f"{host.name} is {host.get_state_display().lower()}; choose a connected host."
    return host


def pick_host(hosts: list[Host], virt_type: str) -> Host | None:
    """ "Pick for me": the connected host offering `virt_type` (any, for auto) with the most free memory."""
    able = [
        host
        for host in hosts
        if host.state == Host.State.CONNECTED and (virt_type == "auto" or virt_type in host.virt_types)
    ]
    if not able:
        return None
    free = host_free_memory_kib(able)
    return max(able, key=lambda host: (free.get(host.pk, 0), -host.pk))


def host_free_memory_kib(hosts: list[Host]) -> dict[int, int]:
    """Free memory per host: the latest fresh sample, else what the host said at its last refresh."""
    since = timezone.now() - STATS_FRESH
    samples = (
        StatSample.objects.filter(
            kind=StatSample.Kind.HOST, object_key__in=[str(host.pk) for host in hosts], resolution=10, ts__gte=since
        )
        .exclude(mem_total_kib=None)
        .exclude(mem_used_kib=None)
        .order_by("-ts")
        .values_list("object_key", "mem_total_kib", "mem_used_kib")
    )
    free: dict[int, int] = {}
    for key, total, used in samples:  # newest first: a few samples per host in the window
        free.setdefault(int(key), int(total or 0) - int(used or 0))
    for host in hosts:
        reported = host.capability("free_memory_kib")
        if host.pk not in free and isinstance(reported, int):
            free[host.pk] = reported
    return free


def _check_fits(host: Host, vcpus: int, memory_mib: int, errors: dict[str, str]) -> None:
    cpus = host.capability("cpus")
    if isinstance(cpus, int) and cpus > 0 and vcpus > cpus and "vcpus" not in errors:
        errors["vcpus"] = f"{host.name} has {cpus} CPUs; give the VM at most {cpus} vCPUs."
    memory_kib = host.capability("memory_kib")
    if isinstance(memory_kib, int) and memory_kib > 0 and memory_mib * 1024 > memory_kib and "memory_mib" not in errors:
        errors["memory_mib"] = f"{host.name} has {memory_kib // 1024} MiB of memory in all; ask for less."


def _name_taken(host: Host, name: str) -> bool:
    vms = VirtualMachine.objects.filter(host=host, name=name).exclude(state=VirtualMachine.State.GONE)
    creating = Operation.objects.filter(
        kind="vm.create", target_label=name, status__in=Operation.ACTIVE, params__host=host.pk
    )
    return vms.exists() or creating.exists()


def _domain_type(host: Host, wanted: str, errors: dict[str, str]) -> str:
    offered = host.virt_types
    if wanted == "auto":
        return "kvm" if "kvm" in offered else "qemu"
    if wanted not in ("kvm", "qemu"):
        errors["virt_type"] = "Choose kvm, qemu (TCG emulation) or auto."
    elif wanted not in offered:
        errors["virt_type"] = f"{host.name} does not offer {wanted}; it offers {', '.join(offered) or 'nothing'}."
    return wanted


def _firmware(host: Host, wanted: str, errors: dict[str, str]) -> str:
    if wanted not in ("bios", "uefi"):
        errors["firmware"] = "Choose bios or uefi."
    elif wanted == "uefi" and "efi" not in (host.capability("firmwares") or []):
        errors["firmware"] = f"{host.name} has no UEFI firmware (OVMF) installed; use BIOS."
    return wanted


def _source(
    actor: Actor, host: Host, raw: Any, name: str, errors: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    source = raw if isinstance(raw, Mapping) else {}
    kind = str(source.get("type") or "")
    if kind not in SOURCES:
        errors["source"] = f"Choose a boot source: {', '.join(SOURCES)}."
        return {"type": kind}, None
    if kind == "iso":
        return {"type": "iso", "iso": _volume_path(host, source.get("iso"), "iso", errors)}, None
    if kind == "template":
        return _template_source(actor, host, source, errors), None
    if kind == "cloud":
        image = _volume_path(host, source.get("image"), "image", errors)
        clone = _clone_mode(source, errors)
        cloud = {"type": "cloud", "image": image, "clone": clone, "pool": _pool_holding(host, image)}
        return cloud, _cloud_init(source, name, errors)
    if kind == "kernel":
        return _kernel_source(actor, source, errors), None
    return {"type": "network"}, None


def _clone_mode(source: Mapping[str, Any], errors: dict[str, str]) -> str:
    mode = str(source.get("clone") or "linked")
    if mode not in CLONE_MODES:
        errors["clone"] = "Choose a linked clone or a full copy."
    return mode


def _volume_path(host: Host, raw: Any, key: str, errors: dict[str, str]) -> str:
    volume = _volume(host, raw, key, errors)
    return volume.path if volume is not None else ""


def _volume(host: Host, raw: Any, key: str, errors: dict[str, str]) -> Volume | None:
    """A volume (by id) with a path, in an active pool of `host`."""
    try:
        volume = Volume.objects.select_related("pool").filter(pk=int(raw), pool__host=host).first()
    except (TypeError, ValueError):
        volume = None
    if volume is None or not volume.path:
        errors[key] = f"Choose a volume from a pool on {host.name}."
        return None
    if volume.pool.state != "running":
        errors[key] = f"Pool {volume.pool.name} is not active; start it first."
    if key == "image" and volume.format not in DISK_FORMATS:
        errors[key] = f"{volume.name} is {volume.format or 'of unknown format'}; a cloud image is qcow2 or raw."
    return volume


def _pool_holding(host: Host, path: str) -> str:
    """The pool a host path belongs to (where copies of it go by default), else the host's default pool."""
    volume = Volume.objects.select_related("pool").filter(pool__host=host, path=path).first()
    if volume is not None and volume.pool.state == "running":
        return volume.pool.name
    pools = {pool.pk: pool for pool in StoragePool.objects.filter(host=host, gone_since__isnull=True)}
    fallback = _pool(pools, None)
    return fallback.name if fallback is not None else ""


def _template_source(actor: Actor, host: Host, source: Mapping[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    from vms.catalog import template_disks, visible_templates

    clone = _clone_mode(source, errors)
    try:
        template = visible_templates(actor.user).filter(uuid=uuidlib.UUID(str(source.get("template")))).first()
    except ValueError:
        template = None
    if template is None:
        errors["template"] = "Choose a template from the catalog."
        return {"type": "template", "clone": clone}
    if template.host_id != host.pk:
        errors["template"] = f"Template {template.name} lives on {template.host.name}; create the VM there."
    if template.state != VirtualMachine.State.SHUTOFF:
        errors["template"] = f"Template {template.name} is {template.get_state_display().lower()}; it must be shut off."
    disks = template_disks(template)
    if not disks:
        errors["template"] = f"Template {template.name} has no disk image to copy."
    pool = _pool_holding(host, disks[0]["path"]) if disks else ""
    return {"type": "template", "clone": clone, "template": str(template.uuid), "disks": disks, "pool": pool}


def _kernel_source(actor: Actor, source: Mapping[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    # A kernel path is a file on the host that QEMU will read: only administrators may name one.
    access.authorize(actor, "vm.create.kernel")
    paths = {key: str(source.get(key) or "") for key in ("kernel", "initrd")}
    for key, path in paths.items():
        if (path or key == "kernel") and (not path.startswith("/") or "/../" in path or "\x00" in path):
            errors[key] = f"The {key} is an absolute path on the host."
    cmdline = str(source.get("cmdline") or "")
    if len(cmdline) > 2048 or "\n" in cmdline:
        errors["cmdline"] = "The kernel command line is one line of at most 2048 characters."
    return {"type": "kernel", **paths, "cmdline": cmdline}


def _cloud_init(source: Mapping[str, Any], name: str, errors: dict[str, str]) -> dict[str, Any] | None:
    raw = source.get("cloud_init")
    settings = raw if isinstance(raw, Mapping) else {}
    keys = settings.get("ssh_keys") or ""
    try:
        config = CloudInit(
            instance_id=str(uuidlib.uuid4()),
            hostname=str(settings.get("hostname") or name.replace("_", "-").replace(".", "-")[:63] or "vm"),
            user=str(settings.get("user") or ""),
            ssh_keys=tuple(keys) if isinstance(keys, list) else parse_ssh_keys(str(keys)),
            user_data=str(settings.get("user_data") or ""),
        )
    except Invalid as exc:
        errors.update({f"cloud_init.{key}": str(message) for key, message in exc.details.items()})
        return None
    return asdict(config)


def _disks(host: Host, raw: Any, source: Mapping[str, Any], errors: dict[str, str]) -> list[DiskPlan]:
    """Blank disks to create; for template and cloud sources the first one sizes the copied system disk."""
    items = raw if isinstance(raw, list) else []
    if len(items) > MAX_DISKS:
        errors["disks"] = f"A VM gets at most {MAX_DISKS} disks here."
        return []
    if not items and source.get("type") in ("iso", "network"):
        errors["disks"] = "Add a disk to install the system on."
    pools = {pool.pk: pool for pool in StoragePool.objects.filter(host=host, gone_since__isnull=True)}
    plans = []
    for index, item in enumerate(items):
        disk = item if isinstance(item, Mapping) else {}
        plan = _disk(pools, disk, f"disks.{index}", errors)
        if plan is not None:
            plans.append(plan)
    _check_space(pools, plans, errors)
    return plans


def _disk(pools: dict[int, StoragePool], disk: Mapping[str, Any], key: str, errors: dict[str, str]) -> DiskPlan | None:
    pool = _pool(pools, disk.get("pool"))
    size = _int(disk, "size_mib", 0, errors, low=1, high=MAX_DISK_MIB, where=key)
    values = {name: str(disk.get(name) or default) for name, default in _DISK_DEFAULTS.items()}
    for name, allowed in (("format", DISK_FORMATS), ("allocation", ALLOCATIONS), ("bus", DISK_BUSES)):
        if values[name] not in allowed:
            errors[key] = f"Disk {name} must be one of {', '.join(allowed)}."
    if values["allocation"] == "metadata" and values["format"] != "qcow2":
        errors[key] = "Metadata preallocation only applies to qcow2 disks."
    if pool is None:
        errors[key] = "Choose an active storage pool for the disk."
        return None
    return DiskPlan(pool=pool.name, size_mib=size, **values)


_DISK_DEFAULTS = {"format": "qcow2", "allocation": "thin", "bus": "virtio"}


def _pool(pools: dict[int, StoragePool], raw: Any) -> StoragePool | None:
    active = {pk: pool for pk, pool in pools.items() if pool.state == "running"}
    if raw in (None, ""):
        by_name = {pool.name: pool for pool in active.values()}
        return by_name.get("default") or next(iter(sorted(active.values(), key=lambda p: p.name)), None)
    try:
        return active.get(int(raw))
    except (TypeError, ValueError):
        return next((pool for pool in active.values() if pool.name == raw), None)


def _check_space(pools: dict[int, StoragePool], plans: list[DiskPlan], errors: dict[str, str]) -> None:
    """Preallocated disks must fit now; thin ones may overcommit, as on every hypervisor."""
    needed: dict[str, int] = {}
    for plan in plans:
        if plan.allocation == "full":
            needed[plan.pool] = needed.get(plan.pool, 0) + plan.size_mib * 1024 * 1024
    for pool in pools.values():
        if needed.get(pool.name, 0) > pool.available:
            gib = needed[pool.name] / 1024**3
            errors["disks"] = (
                f"Pool {pool.name} has {pool.available / 1024**3:.1f} GiB free; the disks need {gib:.1f} GiB."
            )


def _nics(host: Host, raw: Any, errors: dict[str, str]) -> list[dict[str, str]]:
    items = raw if isinstance(raw, list) else []
    if len(items) > MAX_NICS:
        errors["nics"] = f"A VM gets at most {MAX_NICS} network interfaces here."
        return []
    networks = Network.objects.filter(Q(host=host) & Q(gone_since__isnull=True))
    plans = []
    for index, item in enumerate(items):
        nic = item if isinstance(item, Mapping) else {}
        network = _network(networks, nic.get("network"))
        model = str(nic.get("model") or "virtio")
        if network is None:
            errors[f"nics.{index}"] = f"Choose a network on {host.name}."
        elif model not in NIC_MODELS:
            errors[f"nics.{index}"] = f"NIC model must be one of {', '.join(NIC_MODELS)}."
        else:
            plans.append({"network": network.name, "model": model})
    return plans


def _network(networks: Any, raw: Any) -> Network | None:
    try:
        found: Network | None = networks.filter(pk=int(raw)).first()
    except (TypeError, ValueError):
        found = networks.filter(name=str(raw or "")).first()
    return found
