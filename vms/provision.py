"""The worker side of creating a VM: disks, cloud-init seed, definition, owner, first start.

Creation is all-or-nothing, through an `Undo` (vms/undo.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils import timezone

from consoles.targets import host_is_local, vnc_listen_ip
from hosts.models import Host
from kvmweb import virt
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress
from kvmweb.virt import volumes
from kvmweb.virt.xml import DiskSpec, DomainSpec, NicSpec, SerialSpec, VncSpec, VolumeSpec, build_domain_xml
from kvmweb.virt.xml.domain_spec import BootDevice
from vms.cloudinit import CloudInit, seed_iso
from vms.create import CreatePlan, DiskPlan
from vms.handlers import vm_refresh
from vms.messages import vms_publish
from vms.models import VirtualMachine
from vms.undo import Step, Undo

MIB = 1024 * 1024
QEMU_LOG_DIR = "/var/log/libvirt/qemu"
# An installer CD boots first, then the disk it installed to; likewise a PXE install.
_BOOT: dict[str, tuple[BootDevice, ...]] = {"iso": ("cdrom", "hd"), "network": ("network", "hd")}
_TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}


def _create(op: Operation, progress: Progress) -> dict[str, Any]:
    plan = CreatePlan.from_params(op.params)
    host = Host.objects.get(pk=plan.host)
    undo = Undo(host.virt_target())
    step = Step(progress)
    try:
        return _build(plan, host, undo, step)
    except Exception as exc:  # any fault: remove what was made, then report it (vms/undo.py)
        raise undo.failed(exc, f"Creating {plan.name} failed while {step.name}") from exc


def _build(plan: CreatePlan, host: Host, undo: Undo, step: Step) -> dict[str, Any]:
    target = host.virt_target()
    disks = _system_disks(plan, target, undo, step)
    disks += _blank_disks(plan, target, undo, step, skip=1 if plan.source["type"] in ("template", "cloud") else 0)
    cdroms = _cdroms(plan, target, undo, step)
    spec = _domain_spec(plan, _with_targets(disks + cdroms), _serial_log(host, plan), host)
    step(85, f"Defining {plan.name} on {host.name}")
    undo.domain = virt.define_domain(target, build_domain_xml(spec)).uuid
    vm = claim_for_requester(host, plan.uuid, plan.owner)
    if plan.start:
        step(92, f"Starting {plan.name}")
        virt.start_domain(target, plan.uuid)
        vm_refresh(host, plan.uuid)
    return {"vm": str(vm.uuid), "name": vm.name, "host": host.name, "volumes": list(undo.volumes)}


def _system_disks(plan: CreatePlan, target: virt.HostTarget, undo: Undo, step: Step) -> list[DiskSpec]:
    """The disks copied or linked from a template or cloud image (the first one may grow)."""
    kind = plan.source["type"]
    if kind == "template":
        images = plan.source["disks"]
    elif kind == "cloud":
        images = [{"path": plan.source["image"], "bus": "virtio"}]
    else:
        return []
    grow = plan.disks[0].size_mib * MIB if plan.disks else None
    pool = _copy_pool(plan)
    specs = []
    for index, image in enumerate(images):
        name = f"{plan.name}-disk{index}.qcow2"
        record = _copy_image(
            plan, target, pool, image["path"], name, grow if index == 0 else None, step, index, len(images)
        )
        undo.volumes.append(record.path or "")
        bus = image.get("bus", "virtio")
        specs.append(
            DiskSpec(pool=pool, volume=record.name, format=_format(record), bus=bus, target_dev=_first_target(bus))
        )
    return specs


def _copy_image(
    plan: CreatePlan,
    target: virt.HostTarget,
    pool: str,
    source: str,
    name: str,
    grow: int | None,
    step: Step,
    index: int,
    count: int,
) -> virt.VolumeRecord:
    low, high = 10 + 60 * index // count, 10 + 60 * (index + 1) // count
    if plan.source["clone"] == "linked":
        step(low, f"Making linked clone {name} of {source}")
        return volumes.create_linked_volume(target, pool, source, name, capacity_bytes=grow)
    step(low, f"Copying {source} to {name}")
    return volumes.clone_volume(
        target, pool, source, name, format="qcow2", capacity_bytes=grow, progress=_copy_progress(step, name, low, high)
    )


def _copy_progress(step: Step, name: str, low: int, high: int) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        share = done / total if total else 0
        step(low + int((high - low) * min(share, 1.0)), f"Copying {name}: {done // MIB} of {total // MIB} MiB")

    return report


def _copy_pool(plan: CreatePlan) -> str:
    """Copies go to the first disk's pool when one was chosen, else next to their image."""
    return plan.disks[0].pool if plan.disks else str(plan.source["pool"])


def _format(record: virt.VolumeRecord) -> Any:
    return "raw" if record.format == "raw" else "qcow2"


def _blank_disks(plan: CreatePlan, target: virt.HostTarget, undo: Undo, step: Step, *, skip: int) -> list[DiskSpec]:
    specs = []
    for index, disk in enumerate(plan.disks[skip:], start=skip):
        name = f"{plan.name}-disk{index}.{disk.format}"
        step(70 + index, f"Creating disk {name} ({_size(disk)}, {disk.allocation})")
        spec = VolumeSpec(name=name, capacity_bytes=disk.size_mib * MIB, format=disk.format, allocation=disk.allocation)  # type: ignore[arg-type]
        record = volumes.create_volume(target, disk.pool, spec)
        undo.volumes.append(record.path or "")
        specs.append(
            DiskSpec(pool=disk.pool, volume=name, format=disk.format, bus=disk.bus, target_dev=_first_target(disk.bus))  # type: ignore[arg-type]
        )
    return specs


def _size(disk: DiskPlan) -> str:
    return f"{disk.size_mib / 1024:g} GiB" if disk.size_mib >= 1024 else f"{disk.size_mib} MiB"


def _cdroms(plan: CreatePlan, target: virt.HostTarget, undo: Undo, step: Step) -> list[DiskSpec]:
    cdroms = []
    if plan.source["type"] == "iso":
        cdroms.append(
            DiskSpec(device="cdrom", source_file=plan.source["iso"], format="raw", bus="sata", target_dev="sda")
        )
    if plan.cloud_init is not None:
        cdroms.append(_seed(plan, target, undo, step))
    return cdroms


def _seed(plan: CreatePlan, target: virt.HostTarget, undo: Undo, step: Step) -> DiskSpec:
    step(80, "Building the cloud-init seed image")
    settings = dict(plan.cloud_init or {})
    data = seed_iso(CloudInit(**{**settings, "ssh_keys": tuple(settings.get("ssh_keys") or ())}))
    pool = _copy_pool(plan)
    name = f"{plan.name}-cidata.iso"
    step(82, f"Uploading {name} to pool {pool}")
    record = volumes.upload_volume(target, pool, name, [data], size=len(data))
    undo.volumes.append(record.path or "")
    return DiskSpec(device="cdrom", pool=pool, volume=name, format="raw", bus="sata", target_dev="sda")


def _first_target(bus: str) -> str:
    """A target name that fits the bus, until `_with_targets` names every disk of the VM."""
    return _TARGET_PREFIX[bus] + "a"


def _with_targets(disks: list[DiskSpec]) -> list[DiskSpec]:
    """Give each disk the next free target name on its bus (vda, vdb, ...; SATA disks and CD-ROMs sda, sdb, ...).

    One count for all of them, so that a SATA disk and the installer CD-ROM never both get sda.
    """
    counters: dict[str, int] = {}
    named = []
    for disk in disks:
        prefix = _TARGET_PREFIX[disk.bus]
        index = counters.get(prefix, 0)
        counters[prefix] = index + 1
        named.append(_retarget(disk, prefix + "abcdefghijklmnop"[index]))
    return named


def _retarget(disk: DiskSpec, dev: str) -> DiskSpec:
    return DiskSpec(
        device=disk.device,
        source_file=disk.source_file,
        pool=disk.pool,
        volume=disk.volume,
        format=disk.format,
        target_dev=dev,
        bus=disk.bus,
        readonly=disk.readonly,
    )


def _serial_log(host: Host, plan: CreatePlan) -> str | None:
    """Keep the serial console's output in the host's QEMU log directory, where the Logs tab reads it.

    Only a system daemon writes there; a session daemon runs as a user who can't.
    """
    return f"{QEMU_LOG_DIR}/{plan.name}-serial.log" if host.uri.rstrip("/").endswith("/system") else None


def _vnc(host: Host) -> VncSpec:
    """A unix socket on local hosts (the console proxy runs beside libvirtd; nothing listens on the
    network); on remote hosts the host's console address, where kvmweb's console proxy connects."""
    if host_is_local(host.uri):
        return VncSpec(auto_socket=True)
    return VncSpec(listen_address=vnc_listen_ip(host))


def _domain_spec(plan: CreatePlan, disks: list[DiskSpec], serial_log: str | None, host: Host) -> DomainSpec:
    source = plan.source
    kernel = source.get("kernel") if source["type"] == "kernel" else None
    boot = _BOOT.get(source["type"], ("hd",))
    return DomainSpec(
        name=plan.name,
        uuid=plan.uuid,
        memory_mib=plan.memory_mib,
        vcpus=plan.vcpus,
        domain_type=plan.domain_type,  # type: ignore[arg-type]
        arch=plan.arch,
        firmware=plan.firmware,  # type: ignore[arg-type]
        boot=boot,
        kernel=kernel or None,
        initrd=(source.get("initrd") or None) if kernel else None,
        cmdline=(source.get("cmdline") or None) if kernel else None,
        disks=tuple(disks),
        nics=tuple(NicSpec(network=nic["network"], model=nic["model"]) for nic in plan.nics),  # type: ignore[arg-type]
        graphics=_vnc(host) if plan.graphics else None,
        serial=SerialSpec(log_file=serial_log) if plan.serial else None,
        guest_agent=plan.guest_agent,
        description=plan.description or None,
    )


def claim_for_requester(host: Host, uuid: str, owner_id: int | None) -> VirtualMachine:
    """The new VM's row, owned by whoever asked for it."""
    vm = vm_refresh(host, uuid) or VirtualMachine.objects.get(uuid=uuid)
    if owner_id is not None and vm.owner_id != owner_id:
        vm.owner_id = owner_id
        vm.version += 1
        vm.updated = timezone.now()
        vm.save(update_fields=["owner", "version", "updated"])
        vms_publish([vm], host_id=host.pk)
    return vm


operation_kind("vm.create", label="Create VM", deadline_seconds=6 * 3600, retry_transient=False)(_create)
