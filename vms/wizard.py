"""The create wizard's page: what it may offer (from the database only) and its form, as an API body.

The wizard posts one form; `wizard_data` turns it into the same request the API takes, so both
go through `vms.create.vm_create` and are checked the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import QueryDict

from kvmweb import access
from networks.models import Network
from storage.models import StoragePool, Volume
from vms.catalog import visible_templates
from vms.create import MAX_DISKS, MAX_NICS, host_free_memory_kib

User = AbstractBaseUser | AnonymousUser
MIB_PER_GIB = 1024
# The fields of one disk or NIC row. A row is posted when its first field is, and counts when that is filled.
ROW_FIELDS = {"disk": ("size_gib", "pool", "format", "allocation", "bus"), "nic": ("network", "model")}
# The API's list each kind of row becomes, which also keys its errors ("disks.1").
ROW_LISTS = {"disk": "disks", "nic": "nics"}
DEFAULT_DISK_GIB = "10"


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
        "limits": {"disk": MAX_DISKS, "nic": MAX_NICS},
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
        "disks": [_disk(row) for row in posted_rows(post, "disk")],
        "nics": [{"network": row["network"], "model": row["model"] or "virtio"} for row in posted_rows(post, "nic")],
        "graphics": post.get("graphics") == "on",
        "serial": post.get("serial") == "on",
        "guest_agent": post.get("guest_agent") == "on",
        "description": post.get("description", ""),
        "start": post.get("start") == "on",
    }


def row_prefix(kind: str, index: int) -> str:
    """The field prefix of a kind's index-th row: disk, disk2, disk3... (the first keeps the plain name)."""
    return kind if index == 0 else f"{kind}{index + 1}"


def posted_rows(post: Mapping[str, Any], kind: str) -> list[dict[str, str]]:
    """The filled rows of `kind` ("disk" or "nic") in the form, in their order, as {field: value}.

    All of them, even past the limit, so that the create checks refuse too many with their message.
    """
    fields = ROW_FIELDS[kind]
    pattern = re.compile(rf"{kind}([2-9]|[1-9][0-9]+)?_{fields[0]}")
    numbers = sorted(int(found.group(1) or 1) for key in post if (found := pattern.fullmatch(key)))
    rows = [
        {name: str(post.get(f"{row_prefix(kind, n - 1)}_{name}") or "").strip() for name in fields} for n in numbers
    ]
    return [row for row in rows if row[fields[0]]]


def wizard_rows(post: Mapping[str, Any] | None, errors: Mapping[str, str]) -> dict[str, Any]:
    """The disk and NIC rows to show (what was posted with each row's error, or one of each for a fresh
    form), and under "blank" the new row of each kind that the page's script copies for "Add"."""
    fresh = {"disk": {"size_gib": DEFAULT_DISK_GIB}, "nic": {}}
    rows: dict[str, Any] = {"blank": {kind: _row(kind, 0, values, "") for kind, values in fresh.items()}}
    for kind, list_key in ROW_LISTS.items():
        values = posted_rows(post, kind) if post is not None else [fresh[kind]]
        rows[kind] = [_row(kind, i, row, errors.get(f"{list_key}_{i}", "")) for i, row in enumerate(values)]
    return rows


def _row(kind: str, index: int, values: Mapping[str, str], error: str) -> dict[str, Any]:
    return {
        "prefix": row_prefix(kind, index),
        "suffix": str(index + 1) if index else "",
        "number": index + 1,
        "values": values,
        "error": error,
    }


def _disk(row: Mapping[str, str]) -> dict[str, Any]:
    return {
        "pool": row["pool"] or None,
        "size_mib": _gib_to_mib(row["size_gib"]),
        "format": row["format"] or "qcow2",
        "allocation": row["allocation"] or "thin",
        "bus": row["bus"] or "virtio",
    }


def _gib_to_mib(text: str) -> Any:
    try:
        return round(float(text) * MIB_PER_GIB)
    except (ValueError, OverflowError):  # also nan and inf
        return text  # refused with the field's message by the create checks
