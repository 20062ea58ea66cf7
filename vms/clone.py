"""Cloning a shut-off VM: a new name, UUID and MACs, and its disks copied (full) or linked (overlays).

All-or-nothing, like creation: volumes and the definition made so far are removed when a step fails.
"""

from __future__ import annotations

from typing import Any

from kvmweb import virt
from kvmweb.errors import Invalid
from kvmweb.operations.models import Operation
from kvmweb.operations.registry import operation_kind
from kvmweb.operations.services import Progress
from kvmweb.virt import volumes
from kvmweb.virt.xml import DiskInfo, clone_domain_xml, domain_devices
from vms.actions import ActionSpec, action_register
from vms.create import CLONE_MODES, NAME, NAME_RULE
from vms.handlers import vm_for_operation
from vms.models import VirtualMachine
from vms.provision import MIB, claim_for_requester
from vms.undo import Step, Undo

S = VirtualMachine.State


def check_clone_params(vm: VirtualMachine, given: dict[str, Any]) -> dict[str, Any]:
    name = str(given.get("name") or "").strip()
    mode = str(given.get("mode") or "full")
    if not NAME.fullmatch(name):
        raise Invalid(f"{name!r} is not a valid VM name. {NAME_RULE}", details={"name": NAME_RULE})
    taken = VirtualMachine.objects.filter(host_id=vm.host_id, name=name).exclude(state=S.GONE).exists()
    if taken:
        message = f"{vm.host.name} already has a VM named {name}."
        raise Invalid(message, details={"name": message})
    if mode not in CLONE_MODES:
        raise Invalid("Choose mode=full (an independent copy) or mode=linked.", details={"mode": "full or linked"})
    return {"name": name, "mode": mode}


def _clone(op: Operation, progress: Progress) -> dict[str, Any]:
    vm, host = vm_for_operation(op)
    target = host.virt_target()
    name, mode = str(op.params["name"]), str(op.params["mode"])
    undo = Undo(target)
    step = Step(progress)
    try:
        step(5, f"Reading the definition of {vm.name}")
        xml = virt.get_domain_xml(target, str(vm.uuid), inactive=True)
        sources = _copy_disks(target, xml, name, mode, undo, step)
        step(90, f"Defining {name}")
        summary = virt.define_domain(target, clone_domain_xml(xml, name=name, disk_sources=sources))
        undo.domain = summary.uuid
        clone = claim_for_requester(host, summary.uuid, op.requested_by_id)
    except Exception as exc:  # any fault: remove what was made, then report it (vms/undo.py)
        raise undo.failed(exc, f"Cloning {vm.name} failed while {step.name}") from exc
    return {"vm": str(clone.uuid), "name": name, "volumes": list(undo.volumes)}


def _copy_disks(
    target: virt.HostTarget, xml: str, name: str, mode: str, undo: Undo, step: Step
) -> dict[str, tuple[str, str]]:
    """Copy or link every disk (not CD-ROMs, which stay shared); old path -> (new path, format)."""
    disks = [disk for disk in domain_devices(xml).disks if disk.device == "disk"]
    sources: dict[str, tuple[str, str]] = {}
    for index, disk in enumerate(disks):
        path, pool = _source_of(target, disk)
        name_of_source = path.rsplit("/", 1)[-1]
        new_name = f"{name}-disk{index}.qcow2"
        low, high = 10 + 75 * index // len(disks), 10 + 75 * (index + 1) // len(disks)
        if mode == "linked":
            step(low, f"Making linked clone {new_name}")
            copy = volumes.create_linked_volume(target, pool, path, new_name)
        else:
            step(low, f"Copying {name_of_source} to {new_name}")
            copy = volumes.clone_volume(
                target, pool, path, new_name, format="qcow2", progress=_reporter(step, new_name, low, high)
            )
        undo.volumes.append(copy.path or "")
        # Keyed as clone_domain_xml finds the disk: its file, or "pool/volume".
        key = disk.source_path or f"{disk.source_pool}/{disk.source_volume}"
        sources[key] = (copy.path or "", "qcow2")
    return sources


def _source_of(target: virt.HostTarget, disk: DiskInfo) -> tuple[str, str]:
    """The disk's path and the pool holding it: only pool volumes can be copied through libvirt."""
    path = disk.source_path
    if path is None:
        found = volumes.volume_in_pool(target, disk.source_pool or "", disk.source_volume or "")
        if found is None or not found.path:
            raise virt.NotFound(f"Volume {disk.source_volume} is no longer in pool {disk.source_pool}.")
        path = found.path
    pool = volumes.pool_of_volume(target, path)
    if pool is None:
        raise virt.NotFound(f"Disk {disk.target_dev} ({path}) is not in a storage pool, so it can't be copied.")
    return path, pool


def _reporter(step: Step, name: str, low: int, high: int) -> Any:
    def report(done: int, total: int) -> None:
        share = min(done / total, 1.0) if total else 0.0
        step(low + int((high - low) * share), f"Copying {name}: {done // MIB} of {total // MIB} MiB")

    return report


operation_kind("vm.clone", label="Clone VM", deadline_seconds=6 * 3600, retry_transient=False)(_clone)
action_register(
    ActionSpec(
        "clone",
        "Clone",
        "copy",
        "clone",
        frozenset({S.SHUTOFF}),
        params=("name", "mode"),
        hints={S.RUNNING: "{name} is running. Shut it down first, so its disks are consistent."},
        group="manage",
        check=check_clone_params,
    )
)
