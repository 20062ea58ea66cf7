"""Storage pools: define, build, start, stop, autostart and undefine.

Pools are found by UUID, as the inventory lists them; each function that changes a pool returns
its ``PoolRecord`` (None once it is undefined). Rescanning a pool is ``volumes.refresh_pool``.

Undefining never touches data unless ``delete_contents`` is given. Then, and only then, every
volume the pool lists is deleted, and after that the pool's own storage (``virStoragePoolDelete``:
a ``dir`` pool's directory, which must then be empty, a ``logical`` pool's volume group). If
anything the pool does not list remains (a file libvirt does not show), the host refuses to
remove the directory and the pool stays defined, stopped, so nothing unknown is lost.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import libvirt

from kvmweb.virt import lookup
from kvmweb.virt.connection import Connection, connect
from kvmweb.virt.errors import AlreadyExists, InvalidOperation
from kvmweb.virt.inventory import _pool_record
from kvmweb.virt.target import HostTarget
from kvmweb.virt.types import PoolRecord
from kvmweb.virt.xml.facts import pool_facts
from kvmweb.virt.xml.pool_spec import PoolSpec, check_pool_xml
from kvmweb.virt.xml.pool_xml import build_pool_xml

Pool = Any  # a libvirt.virStoragePool; it never leaves this module


def define_pool(target: HostTarget, spec: PoolSpec | str) -> PoolRecord:
    """Define (not start or build) a persistent pool from a spec or from checked raw XML."""
    if isinstance(spec, PoolSpec):
        name, xml = spec.name, build_pool_xml(spec)
    else:
        name, xml = check_pool_xml(spec), spec
    with connect(target) as conn:
        _refuse_taken(conn, name)
        return _record(conn.storagePoolDefineXML(xml, 0))


def build_pool(target: HostTarget, uuid: str) -> PoolRecord:
    """Prepare the pool's storage (a dir pool's directory, an LVM group); never overwrites data."""
    with connect(target) as conn:
        pool = lookup.pool(conn, uuid)
        if pool.isActive():
            raise InvalidOperation(f"Storage pool {pool.name()} is running; stop it before building it.")
        # A directory's build only makes the directory; for a file system or a volume group the
        # flag makes the host refuse to format a device that already holds data.
        facts = pool_facts(pool.XMLDesc(0))
        pool.build(0 if facts.type in ("dir", "netfs") else libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE)
        return _record(pool)


def start_pool(target: HostTarget, uuid: str) -> PoolRecord:
    with connect(target) as conn:
        pool = lookup.pool(conn, uuid)
        if not pool.isActive():
            pool.create(0)
        return _record(pool)


def stop_pool(target: HostTarget, uuid: str) -> PoolRecord:
    """Stop (libvirt's "destroy") the pool: its data stays; guests using its volumes keep them open."""
    with connect(target) as conn:
        pool = lookup.pool(conn, uuid)
        if pool.isActive():
            pool.destroy()
        return _record(pool)


def set_pool_autostart(target: HostTarget, uuid: str, autostart: bool) -> PoolRecord:
    with connect(target) as conn:
        pool = lookup.pool(conn, uuid)
        pool.setAutostart(1 if autostart else 0)
        return _record(pool)


def get_pool_uuid(target: HostTarget, name: str) -> str | None:
    """The UUID of the pool called ``name``, or None."""
    with connect(target) as conn:
        pool = _by_name(conn, name)
        return None if pool is None else str(pool.UUIDString())


def list_pools(target: HostTarget) -> tuple[PoolRecord, ...]:
    """Every pool of the host, by name."""
    with connect(target) as conn:
        return tuple(sorted((_record(pool) for pool in conn.listAllStoragePools(0)), key=lambda r: r.name))


def undefine_pool(target: HostTarget, uuid: str, *, delete_contents: bool = False) -> list[str]:
    """Stop and forget the pool; returns the paths of the volumes deleted (none unless asked).

    With ``delete_contents`` an inactive pool is started first, so its volumes can be listed.
    """
    deleted: list[str] = []
    with connect(target) as conn:
        pool = lookup.pool(conn, uuid)
        if delete_contents:
            if not pool.isActive():
                pool.create(0)
            pool.refresh(0)
            for vol in pool.listAllVolumes(0):
                path = str(vol.path())
                vol.delete(0)
                deleted.append(path)
        if pool.isActive():
            pool.destroy()
        if delete_contents:
            pool.delete(libvirt.VIR_STORAGE_POOL_DELETE_NORMAL)
        if pool.isPersistent():
            pool.undefine()
    return deleted


def _refuse_taken(conn: Connection, name: str) -> None:
    if _by_name(conn, name) is not None:
        raise AlreadyExists(f"The host already has a storage pool named {name}.")


def _by_name(conn: Connection, name: str) -> Pool | None:
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None
        raise


def _record(pool: Pool) -> PoolRecord:
    autostart = False
    with suppress(libvirt.libvirtError):
        autostart = bool(pool.autostart())
    return _pool_record(pool, pool.info(), pool.XMLDesc(0), persistent=bool(pool.isPersistent()), autostart=autostart)
