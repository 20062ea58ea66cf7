"""The create wizard's page: what it may offer (from the database only) and its form, as an API body.

The wizard posts one form; `wizard_data` turns it into the same request the API takes, so both
go through `vms.create.vm_create` and are checked the same way.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import QueryDict

from kvmweb import access
from networks.models import Network
from storage.models import StoragePool, Volume
from vms.catalog import visible_templates
from vms.create import host_free_memory_kib

User = AbstractBaseUser | AnonymousUser
MIB_PER_GIB = 1024


def wizard_choices(user: User) -> dict[str, Any]:
    """Hosts, pools, images, ISOs, templates and networks the user may pick, as JSON for the page's script."""
    hosts = list(access.visible_hosts(user).filter(enabled=True).order_by("name"))
    free = host_free_memory_kib(hosts)
    pools = StoragePool.objects.filter(host__in=hosts, gone_since__isnull=True, state="running").order_by("name")
    volumes = Volume.objects.filter(pool__in=pools).select_related("pool").order_by("name")
    return {
        "hosts": [_host(host, free.get(host.pk)) for host in hosts],
        "pools": [
            {"id": p.pk, "host": p.host_id, "name": p.name, "available": p.available, "capacity": p.capacity}
            for p in pools
        ],
        "isos": [_volume(v) for v in volumes if _is_iso(v)],
        "images": [_volume(v) for v in volumes if v.format in ("qcow2", "raw") and not _is_iso(v)],
        "templates": [
            {
                "uuid": str(t.uuid),
                "host": t.host_id,
                "name": t.name,
                "vcpus": t.vcpus,
                "memory_mib": t.memory_kib // 1024,
            }
            for t in visible_templates(user).filter(host__in=hosts, state="shutoff")
        ],
        "networks": [
            {"id": n.pk, "host": n.host_id, "name": n.name, "active": n.active, "mode": n.forward_mode or "isolated"}
            for n in Network.objects.filter(host__in=hosts, gone_since__isnull=True).order_by("name")
        ],
        "is_admin": access.is_admin(user),
    }


def _host(host: Any, free_kib: int | None) -> dict[str, Any]:
    return {
        "id": host.pk,
        "name": host.name,
        "state": host.state,
        "virt_types": host.virt_types,
        "firmwares": host.capability("firmwares") or [],
        "cpus": host.capability("cpus"),
        "memory_kib": host.capability("memory_kib"),
        "free_kib": free_kib,
        "simulated": host.is_simulated,
    }


def _volume(volume: Volume) -> dict[str, Any]:
    return {
        "id": volume.pk,
        "host": volume.pool.host_id,
        "pool": volume.pool.name,
        "name": volume.name,
        "capacity": volume.capacity,
        "format": volume.format,
    }


def _is_iso(volume: Volume) -> bool:
    return volume.format == "iso" or volume.name.lower().endswith(".iso")


def wizard_data(post: QueryDict) -> dict[str, Any]:
    """The wizard's fields as an API create body (sizes in GiB become MiB)."""
    source_type = post.get("source_type", "")
    source: dict[str, Any] = {"type": source_type, "clone": post.get("clone", "linked")}
    source.update({"iso": post.get("iso"), "template": post.get("template"), "image": post.get("image")})
    if source_type == "cloud":
        source["cloud_init"] = {key: post.get(f"ci_{key}", "") for key in ("user", "hostname", "ssh_keys", "user_data")}
    if source_type == "kernel":
        source.update({key: post.get(key, "") for key in ("kernel", "initrd", "cmdline")})
    return {
        "name": post.get("name", ""),
        "host": post.get("host") or "auto",
        "vcpus": post.get("vcpus", ""),
        "memory_mib": post.get("memory_mib", ""),
        "virt_type": post.get("virt_type", "auto"),
        "firmware": post.get("firmware", "bios"),
        "source": source,
        "disks": _disks(post),
        "nics": [{"network": post.get("network"), "model": post.get("nic_model", "virtio")}]
        if post.get("network")
        else [],
        "graphics": post.get("graphics") == "on",
        "serial": post.get("serial") == "on",
        "guest_agent": post.get("guest_agent") == "on",
        "description": post.get("description", ""),
        "start": post.get("start") == "on",
    }


def _disks(post: QueryDict) -> list[dict[str, Any]]:
    disks = []
    for prefix in ("disk", "disk2"):
        size = post.get(f"{prefix}_size_gib", "").strip()
        if not size:
            continue
        disks.append(
            {
                "pool": post.get(f"{prefix}_pool") or post.get("disk_pool"),
                "size_mib": _gib_to_mib(size),
                "format": post.get(f"{prefix}_format") or post.get("disk_format", "qcow2"),
                "allocation": post.get(f"{prefix}_allocation") or post.get("disk_allocation", "thin"),
                "bus": post.get("disk_bus", "virtio"),
            }
        )
    return disks


def _gib_to_mib(text: str) -> Any:
    try:
        return round(float(text) * MIB_PER_GIB)
    except (ValueError, OverflowError):  # also nan and inf
        return text  # refused with the field's message by the create checks
