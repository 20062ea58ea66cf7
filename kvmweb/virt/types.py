"""The values the adapter hands back: frozen, slotted and free of libvirt objects."""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


class _Serializable:
    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars, ready for JSON."""
        result: dict[str, Any] = _plain(self)
        return result


@dataclass(frozen=True, slots=True)
class GuestCapability(_Serializable):
    os_type: str
    arch: str
    domain_types: tuple[str, ...]
    machines: tuple[str, ...]
    emulator: str


@dataclass(frozen=True, slots=True)
class NumaCell(_Serializable):
    id: int
    memory_kib: int | None
    cpus: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SecurityModel(_Serializable):
    model: str
    doi: str


@dataclass(frozen=True, slots=True)
class HostInfo(_Serializable):
    """What a host is and offers.

    ``sockets`` counts every socket on the host, ``cores`` is per socket and ``threads`` per core,
    as libvirt reports them. Values the driver does not report are None (or empty), never guessed.
    """

    hostname: str
    uri: str
    libvirt_version: str
    hypervisor: str
    hypervisor_version: str
    arch: str | None
    cpu_model: str | None
    cpu_vendor: str | None
    sockets: int
    cores: int
    threads: int
    cpus: int
    mhz: int | None
    memory_kib: int
    free_memory_kib: int | None
    guests: tuple[GuestCapability, ...]
    numa_cells: tuple[NumaCell, ...]
    security_models: tuple[SecurityModel, ...]
    virt_types: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DomainState(_Serializable):
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class DomainSummary(_Serializable):
    uuid: str
    name: str
    state: str
    reason: str
    vcpus: int
    memory_kib: int
    max_memory_kib: int
    autostart: bool
    persistent: bool
    id: int | None
