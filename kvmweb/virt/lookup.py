"""Finding a libvirt object by UUID, after checking the UUID is one (it may come from a URL)."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from kvmweb.virt.connection import Connection
from kvmweb.virt.errors import InvalidArgument

LibvirtObject = Any  # a virDomain, virNetwork or virStoragePool; it never leaves the package


def canonical_uuid(value: str, noun: str) -> str:
    try:
        return str(uuidlib.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgument(f"{value!r} is not a {noun} UUID.") from None


def domain(conn: Connection, uuid: str) -> LibvirtObject:
    return conn.lookupByUUIDString(canonical_uuid(uuid, "virtual machine"))


def network(conn: Connection, uuid: str) -> LibvirtObject:
    return conn.networkLookupByUUIDString(canonical_uuid(uuid, "network"))


def pool(conn: Connection, uuid: str) -> LibvirtObject:
    return conn.storagePoolLookupByUUIDString(canonical_uuid(uuid, "storage pool"))
