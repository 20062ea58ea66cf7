"""What the Hardware tab shows, read from the database only (the VM's last XML and the host's storage
and networks): rendering a page never calls libvirt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kvmweb import virt
from kvmweb.virt.xml import DiskInfo, NicInfo, domain_devices
from networks.models import Network
from storage.models import StoragePool, Volume
from vms.actions import ACTIONS, action_refusal
from vms.edit import checks
from vms.edit.nics import NicTab, nic_tab
from vms.models import VirtualMachine

BOOT_LABELS = {"hd": "Hard disk", "cdrom": "CD-ROM", "network": "Network (PXE)", "fd": "Floppy"}


@dataclass(frozen=True)
class DiskRow:
    info: DiskInfo
    volume: Volume | None  # the storage row of its image, when it is in a known pool

    @property
    def is_cdrom(self) -> bool:
        return self.info.device == "cdrom"

    @property
    def source(self) -> str:
        if self.info.source_path:
            return self.info.source_path
        if self.info.source_pool and self.info.source_volume:
            return f"{self.info.source_pool}/{self.info.source_volume}"
        return ""

    @property
    def capacity_mib(self) -> int:
        return (self.volume.capacity // checks.MIB) if self.volume is not None and self.volume.capacity else 0


@dataclass(frozen=True)
class Hardware:
    """The tab's context. `refusal` maps each action (with '_' for '-') to why it is unavailable, or ''."""

    readable: bool
    disks: list[DiskRow]
    nics: list[NicInfo]
    boot: list[str]
    boot_choices: list[tuple[str, str]]
    boot_slots: list[tuple[int, str]]  # (1, "hd"), (2, "cdrom"), (3, ""): the boot form's three selects
    pools: list[StoragePool]
    isos: list[Volume]
    free_volumes: list[Volume]
    refusal: dict[str, str]
    pending: dict[str, Any]
    memory_mib: int
    max_memory_mib: int
    tags_text: str
    nic_tab: NicTab  # the NICs tab (vms/edit/nics.py)

    @property
    def has_cdrom(self) -> bool:
        return any(row.is_cdrom for row in self.disks)


def vm_hardware(vm: VirtualMachine) -> Hardware:
    try:
        devices = domain_devices(vm.xml) if vm.xml else None
    except virt.VirtError:  # unreadable XML: the tab says libvirt has not reported it
        devices = None
    volumes = Volume.objects.select_related("pool").filter(pool__host_id=vm.host_id, pool__gone_since__isnull=True)
    by_path = {volume.path: volume for volume in volumes if volume.path}
    by_name = {(volume.pool.name, volume.name): volume for volume in volumes}
    disks = []
    for info in devices.disks if devices else ():
        found = by_path.get(info.source_path or "") or by_name.get((info.source_pool or "", info.source_volume or ""))
        disks.append(DiskRow(info, found))
    active = [volume for volume in volumes if volume.pool.state == "running" and volume.path]
    used = checks.used_paths(vm)
    boot = list(devices.boot) if devices else []
    refusal = {
        name.replace("-", "_"): action_refusal(vm, spec) or ""
        for name, spec in ACTIONS.items()
        if spec.group == "hardware"
    }
    if not vm.persistent:
        refusal["set_boot_order"] = (
            f"Cannot set the boot order: {vm.name} is transient (it has no definition to keep it in)."
        )
    networks = list(Network.objects.filter(host_id=vm.host_id, gone_since__isnull=True).order_by("name"))
    return Hardware(
        readable=devices is not None,
        disks=disks,
        nics=list(devices.nics) if devices else [],
        boot=boot,
        boot_choices=[(key, BOOT_LABELS[key]) for key in checks.BOOT_DEVICES],
        boot_slots=[(slot, boot[slot - 1] if slot <= len(boot) else "") for slot in (1, 2, 3)],
        pools=list(
            StoragePool.objects.filter(host_id=vm.host_id, gone_since__isnull=True, state="running").order_by("name")
        ),
        isos=[volume for volume in active if checks.is_iso(volume)],
        free_volumes=[
            volume
            for volume in active
            if not checks.is_iso(volume) and volume.format in checks.DISK_FORMATS and volume.path not in used
        ],
        refusal=refusal,
        pending=dict(vm.pending or {}),
        memory_mib=vm.memory_kib // 1024,
        max_memory_mib=vm.max_memory_kib // 1024,
        tags_text=", ".join(str(tag) for tag in vm.tags or []),
        nic_tab=nic_tab(vm, devices, networks),
    )
