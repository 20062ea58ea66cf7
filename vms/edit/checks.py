"""Checks for the hardware editor's actions: untrusted parameters in, clean parameters out.

Each `check_*` runs before anything reaches libvirt, from what the database knows (the VM's last
XML, the host's pools and volumes). A refusal is `Invalid` with a plain sentence and a message per
field; what passes is plain JSON the worker's handler (vms/edit/handlers.py) carries out. The NIC
actions have their own checks, in vms/edit/nics.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from kvmweb import virt
from kvmweb.errors import Invalid
from kvmweb.virt.xml import DomainDevices, domain_devices
from kvmweb.virt.xml.domain_spec import MAX_MEMORY_MIB, MAX_VCPUS
from storage.models import StoragePool, Volume
from vms.create import MIN_MEMORY_MIB, NAME, NAME_RULE
from vms.models import VirtualMachine

MIB = 1024 * 1024
MAX_DISK_MIB = 64 * 1024 * 1024  # 64 TiB, as for new VMs
MAX_DISKS = 16
MAX_TITLE = 256
MAX_DESCRIPTION = 4096
MAX_TAGS = 16
DISK_FORMATS = ("qcow2", "raw")
ALLOCATIONS = ("thin", "full")
DISK_BUSES = ("virtio", "sata", "scsi")
BOOT_DEVICES = ("hd", "cdrom", "network")
BUS_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}
VOLUME_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
VOLUME_NAME_RULE = "Use letters, digits, '-', '_' and '.', up to 255 characters, not starting with '-' or '.'."
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,31}")
TAG_RULE = "A tag is up to 32 letters, digits, '.', '_', ':', '+' or '-', starting with a letter or digit."
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Sent by the page's confirmation box ("I understand"); it means nothing to the change itself.
_FORM_ONLY = ("confirm",)


def check_set_resources(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    """`vcpus` and/or `memory_mib`, within what the host has; at least one must change something."""
    _only(given, ("vcpus", "memory_mib"))
    if "vcpus" not in given and "memory_mib" not in given:
        raise Invalid("Give vcpus, memory_mib or both.", details={"vcpus": "Required unless memory_mib is given."})
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    host_cpus = _positive(vm.host.capability("cpus"))
    host_mib = (_positive(vm.host.capability("memory_kib")) or 0) // 1024
    if "vcpus" in given:
        high = min(host_cpus or MAX_VCPUS, MAX_VCPUS)
        where = f"{vm.host.name} has {host_cpus} CPUs" if host_cpus else "the most kvmweb allows"
        count = _whole(given["vcpus"])
        if count is None or not 1 <= count <= high:
            errors["vcpus"] = f"vCPUs is a whole number from 1 to {high} ({where})."
        else:
            clean["vcpus"] = count
    if "memory_mib" in given:
        high = min(host_mib or MAX_MEMORY_MIB, MAX_MEMORY_MIB)
        where = f"{vm.host.name} has {high} MiB in all" if host_mib else "the most kvmweb allows"
        mib = _whole(given["memory_mib"])
        if mib is None or not MIN_MEMORY_MIB <= mib <= high:
            errors["memory_mib"] = f"Memory is a whole number of MiB from {MIN_MEMORY_MIB} to {high} ({where})."
        else:
            clean["memory_mib"] = mib
    _raise(errors)
    now = {
        "vcpus": vm.pending.get("vcpus", vm.vcpus),
        "memory_mib": vm.pending.get("memory_mib", vm.memory_kib // 1024),
    }
    if all(now[key] == value for key, value in clean.items()):
        raise Invalid(f"{vm.name} already has that: nothing to change.", details={key: "Unchanged." for key in clean})
    return clean


def check_attach_disk(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    """A new volume (`pool`, `size_mib` or `size_gib`, `format`, `allocation`) or an existing `volume`."""
    _only(given, ("source", "pool", "size_mib", "size_gib", "format", "allocation", "volume", "bus", "target", "name"))
    devices = _devices(vm)
    source = str(given.get("source") or ("existing" if "volume" in given else "new"))
    if source not in ("new", "existing"):
        raise Invalid("Choose source=new (a new volume) or source=existing.", details={"source": "new or existing"})
    if sum(1 for disk in devices.disks if disk.device == "disk") >= MAX_DISKS:
        raise Invalid(
            f"{vm.name} has {MAX_DISKS} disks, the most kvmweb gives a VM.", details={"source": "Too many disks."}
        )
    bus = str(given.get("bus") or "virtio")
    if bus not in DISK_BUSES:
        raise Invalid(f"The disk bus is one of {', '.join(DISK_BUSES)}.", details={"bus": ", ".join(DISK_BUSES)})
    target = _target(devices, bus, given.get("target"))
    clean: dict[str, Any] = {"source": source, "bus": bus, "target": target}
    if source == "existing":
        return clean | _existing_volume(vm, devices, given.get("volume"))
    errors: dict[str, str] = {}
    pool = _active_pool(vm, given.get("pool"))
    if pool is None:
        errors["pool"] = f"Choose an active storage pool on {vm.host.name}."
    size_mib = _size_mib(given, errors)
    disk_format = str(given.get("format") or "qcow2")
    allocation = str(given.get("allocation") or "thin")
    if disk_format not in DISK_FORMATS:
        errors["format"] = "The format is qcow2 or raw."
    if allocation not in ALLOCATIONS:
        errors["allocation"] = "Allocation is thin (grows as written) or full (written up front)."
    _raise(errors)
    assert pool is not None and size_mib is not None
    if allocation == "full" and size_mib * MIB > pool.available:
        message = f"Pool {pool.name} has {pool.available // MIB} MiB free; a full {size_mib} MiB disk does not fit."
        raise Invalid(message, details={"size": message})
    name = str(given.get("name") or f"{vm.name}-{target}.{disk_format}")
    if not VOLUME_NAME.fullmatch(name):
        raise Invalid(f"{name!r} is not a valid volume name. {VOLUME_NAME_RULE}", details={"name": VOLUME_NAME_RULE})
    if Volume.objects.filter(pool=pool, name=name).exists():
        message = f"Pool {pool.name} already has a volume named {name}: give the new one another name."
        raise Invalid(message, details={"name": message})
    return clean | {
        "pool": pool.name,
        "size_mib": size_mib,
        "format": disk_format,
        "allocation": allocation,
        "name": name,
    }


def check_detach_disk(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    _only(given, ("target",))
    disk = _disk(vm, given.get("target"))
    return {"target": disk.target_dev}


def check_resize_disk(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    """`target` grows to `size_mib` (or `size_gib`); never shrinks, since that cuts off the guest's data."""
    _only(given, ("target", "size_mib", "size_gib"))
    disk = _disk(vm, given.get("target"))
    if disk.device != "disk" or disk.readonly:
        message = f"{disk.target_dev} is read-only or removable media, which cannot be resized."
        raise Invalid(message, details={"target": message})
    errors: dict[str, str] = {}
    size_mib = _size_mib(given, errors)
    _raise(errors)
    assert size_mib is not None
    current = disk_volume(vm, disk.source_path, disk.source_pool, disk.source_volume)
    if current is not None and current.capacity and size_mib * MIB <= current.capacity:
        message = (
            f"{disk.target_dev} is {current.capacity // MIB} MiB; choose a larger size "
            "(disks only grow: shrinking would cut off the guest's data)."
        )
        raise Invalid(message, details={"size": message})
    return {"target": disk.target_dev, "size_mib": size_mib}


def check_change_media(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    """`volume` (an ISO volume of the host) goes into the CD-ROM drive `target`; without one, it is ejected."""
    _only(given, ("target", "volume", "eject"))
    disk = _disk(vm, given.get("target"))
    if disk.device != "cdrom":
        message = f"{disk.target_dev} is not a CD-ROM drive, so it has no media to change."
        raise Invalid(message, details={"target": message})
    eject = str(given.get("eject") or "") in ("yes", "true", "1", "on") or given.get("eject") is True
    if eject or given.get("volume") in (None, ""):
        if not disk.source_path:
            raise Invalid(f"{disk.target_dev} is already empty.", details={"target": "Already empty."})
        return {"target": disk.target_dev, "path": None}
    volume = _host_volume(vm, given.get("volume"))
    if volume is None or not is_iso(volume):
        message = f"Choose an ISO image from a pool on {vm.host.name}."
        raise Invalid(message, details={"volume": message})
    return {"target": disk.target_dev, "path": volume.path, "volume": volume.name}


def check_set_boot_order(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    """`order` as a list or "hd,cdrom", or the page's `boot1`..`boot3`; each of hd, cdrom, network once."""
    _only(given, ("order", "boot1", "boot2", "boot3"))
    if not vm.persistent:
        message = f"{vm.name} is transient (it has no definition on the host), so its boot order cannot be saved."
        raise Invalid(message, details={"order": message})
    raw = given.get("order")
    if raw is None:
        raw = [given[key] for key in ("boot1", "boot2", "boot3") if given.get(key) not in (None, "", "none")]
    items = [part.strip() for part in raw.split(",")] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(item, str) and item for item in items):
        raise Invalid(
            "Give the boot order as a list, such as hd, cdrom.", details={"order": "Choose at least one device."}
        )
    unknown = [item for item in items if item not in BOOT_DEVICES]
    if unknown or len(set(items)) != len(items):
        message = f"Boot from {', '.join(BOOT_DEVICES)}, each at most once."
        raise Invalid(message, details={"order": message})
    return {"order": items}


def check_rename(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    _only(given, ("name",))
    name = str(given.get("name") or "").strip()
    if not NAME.fullmatch(name):
        raise Invalid(f"{name!r} is not a valid VM name. {NAME_RULE}", details={"name": NAME_RULE})
    if name == vm.name:
        raise Invalid(f"{vm.name} already has that name.", details={"name": "Unchanged."})
    taken = VirtualMachine.objects.filter(host_id=vm.host_id, name=name).exclude(state=VirtualMachine.State.GONE)
    if taken.exists():
        message = f"{vm.host.name} already has a VM named {name}."
        raise Invalid(message, details={"name": message})
    return {"name": name}


def check_describe(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    """`title`, `description` and `tags`; a field left out keeps its value, unless the page's
    `fields` lists it (an emptied form field is not sent at all, and then means empty)."""
    _only(given, ("title", "description", "tags", "fields"))
    listed = [name.strip() for name in str(given.get("fields") or "").split(",") if name.strip()]
    present = {name for name in ("title", "description", "tags") if name in given or name in listed}
    if not present:
        raise Invalid("Give a title, a description, tags, or any of them.", details={"title": "Nothing given."})
    errors: dict[str, str] = {}
    title = _text(given.get("title", ""))
    description = _text(given.get("description", ""))
    description = description.replace("\r\n", "\n") if description is not None else None
    if title is None or len(title) > MAX_TITLE or "\n" in title or "\r" in title or _CONTROL.search(title):
        errors["title"] = f"The title is one line of at most {MAX_TITLE} characters."
    if description is None or len(description) > MAX_DESCRIPTION or _CONTROL.search(description):
        errors["description"] = f"The description is text of at most {MAX_DESCRIPTION} characters."
    tags = _tags(given.get("tags", []), errors)
    _raise(errors)
    clean: dict[str, Any] = {}
    if "title" in present and title != vm.title:
        clean["title"] = title
    if "description" in present and description != vm.description:
        clean["description"] = description
    if "tags" in present and tags != list(vm.tags or []):
        clean["tags"] = tags
    if not clean:
        raise Invalid(
            f"{vm.name} already has that: nothing to change.", details={name: "Unchanged." for name in present}
        )
    return clean


# -- what the database knows about the host ------------------------------------------------------------------


def is_iso(volume: Volume) -> bool:
    return volume.format == "iso" or volume.name.lower().endswith(".iso")


def disk_volume(vm: VirtualMachine, path: str | None, pool: str | None, name: str | None) -> Volume | None:
    """The storage row of a disk's image, by path or by pool and volume name; None if not in a known pool."""
    volumes = Volume.objects.select_related("pool").filter(pool__host_id=vm.host_id, pool__gone_since__isnull=True)
    if path:
        return volumes.filter(path=path).first()
    if pool and name:
        return volumes.filter(pool__name=pool, name=name).first()
    return None


def used_paths(vm: VirtualMachine) -> set[str]:
    """Image paths any VM of the host lists (from the database's XML), this one included."""
    paths: set[str] = set()
    for xml in (
        VirtualMachine.objects.filter(host_id=vm.host_id)
        .exclude(state=VirtualMachine.State.GONE)
        .values_list("xml", flat=True)
    ):
        try:
            paths.update(disk.source_path for disk in domain_devices(xml).disks if disk.source_path)
        except virt.VirtError:  # a row without usable XML lists no paths
            continue
    return paths


def next_target(devices: DomainDevices, bus: str) -> str:
    """The first free target name on a bus: vdb after vda, sdc after sda and sdb."""
    prefix = BUS_PREFIX[bus]
    taken = {disk.target_dev for disk in devices.disks}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        if prefix + letter not in taken:
            return prefix + letter
    raise Invalid(f"Every {bus} target is taken.", details={"bus": "No free target."})


# -- helpers ----------------------------------------------------------------------------------------------------


def _devices(vm: VirtualMachine) -> DomainDevices:
    try:
        return domain_devices(vm.xml)
    except virt.VirtError as exc:  # empty or unreadable XML: nothing to go on
        raise Invalid(f"kvmweb has no usable definition of {vm.name} yet; try again in a moment.") from exc


def _only(given: Mapping[str, Any], accepted: Iterable[str]) -> None:
    allowed = (*accepted, *_FORM_ONLY)
    unknown = sorted(key for key in given if key not in allowed)
    if unknown:
        raise Invalid(
            f"This change takes no parameter {', '.join(unknown)}; it accepts: {', '.join(accepted)}.",
            details={key: "Not accepted." for key in unknown},
        )


def _raise(errors: dict[str, str]) -> None:
    if errors:
        raise Invalid(" ".join(dict.fromkeys(errors.values())), details=dict(errors))


def _whole(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"\s*\d{1,12}\s*", raw):
        return int(raw)
    return None


def _positive(raw: Any) -> int | None:
    value = _whole(raw)
    return value if value is not None and value > 0 else None


def _size_mib(given: Mapping[str, Any], errors: dict[str, str]) -> int | None:
    """`size_mib` (whole MiB) or `size_gib` (GiB, decimals allowed), from 1 MiB to 64 TiB."""
    rule = f"The size is from 1 MiB to {MAX_DISK_MIB // (1024 * 1024)} TiB."
    if "size_mib" in given:
        mib = _whole(given["size_mib"])
    elif "size_gib" in given:
        mib = _gib(given["size_gib"])
    else:
        errors["size"] = f"Give the size, as size_mib or size_gib. {rule}"
        return None
    if mib is None or not 1 <= mib <= MAX_DISK_MIB:
        errors["size"] = rule
        return None
    return mib


def _gib(raw: Any) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value > MAX_DISK_MIB:
        return None
    return int((value * 1024).to_integral_value())


def _text(raw: Any) -> str | None:
    return raw if isinstance(raw, str) else None


def _tags(raw: Any, errors: dict[str, str]) -> list[str]:
    items = [part.strip() for part in raw.split(",")] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        errors["tags"] = "Tags are a list of words, such as web, prod."
        return []
    tags = list(dict.fromkeys(item for item in items if item))
    if len(tags) > MAX_TAGS:
        errors["tags"] = f"A VM has at most {MAX_TAGS} tags."
    elif not all(TAG.fullmatch(tag) for tag in tags):
        errors["tags"] = TAG_RULE
    return tags


def _target(devices: DomainDevices, bus: str, raw: Any) -> str:
    if raw in (None, ""):
        return next_target(devices, bus)
    target = str(raw)
    if not re.fullmatch(BUS_PREFIX[bus] + r"[a-z]{1,2}", target):
        message = f"On the {bus} bus a disk target looks like {BUS_PREFIX[bus]}b."
        raise Invalid(message, details={"target": message})
    if any(disk.target_dev == target for disk in devices.disks):
        message = f"The VM already has a disk {target}: pick another target."
        raise Invalid(message, details={"target": message})
    return target


def _disk(vm: VirtualMachine, raw: Any) -> Any:
    target = str(raw or "")
    for disk in _devices(vm).disks:
        if disk.target_dev == target:
            return disk
    message = f"{vm.name} has no disk {target or '(none given)'}."
    raise Invalid(message, details={"target": message})


def _active_pool(vm: VirtualMachine, raw: Any) -> StoragePool | None:
    pools = StoragePool.objects.filter(host_id=vm.host_id, gone_since__isnull=True, state="running")
    if raw in (None, ""):
        return None
    if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
        found = pools.filter(pk=int(raw)).first()
        if found is not None:
            return found
    return pools.filter(name=str(raw)).first()


def _host_volume(vm: VirtualMachine, raw: Any) -> Volume | None:
    """A volume with a path in an active pool of the VM's host, by id or by path."""
    volumes = (
        Volume.objects.select_related("pool")
        .filter(pool__host_id=vm.host_id, pool__gone_since__isnull=True, pool__state="running")
        .exclude(path="")
    )
    if isinstance(raw, int) and not isinstance(raw, bool):
        return volumes.filter(pk=raw).first()
    if isinstance(raw, str) and raw.isdigit():
        return volumes.filter(pk=int(raw)).first()
    if isinstance(raw, str) and raw.startswith("/"):
        return volumes.filter(path=raw).first()
    return None


def _existing_volume(vm: VirtualMachine, devices: DomainDevices, raw: Any) -> dict[str, Any]:
    volume = _host_volume(vm, raw)
    if volume is None or is_iso(volume) or volume.format not in DISK_FORMATS:
        message = f"Choose a qcow2 or raw volume from an active pool on {vm.host.name}."
        raise Invalid(message, details={"volume": message})
    if volume.path in used_paths(vm):
        message = f"{volume.name} is already a disk of a VM on {vm.host.name}; two VMs writing one image corrupt it."
        raise Invalid(message, details={"volume": message})
    found = {"path": volume.path, "format": volume.format, "volume": volume.name, "pool": volume.pool.name}
    if volume.encryption:
        if volume.encryption != "luks" or volume.format != "qcow2" or not volume.secret_uuid:
            message = (
                f"{volume.name} is encrypted, but not as a LUKS qcow2 with a known secret; kvmweb cannot attach it."
            )
            raise Invalid(message, details={"volume": message})
        # The disk names the volume's secret, so the host can open the image (the passphrase stays there).
        found["secret"] = volume.secret_uuid
    return found
