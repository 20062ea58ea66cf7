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
class PageCount(_Serializable):
    """How many pages of one size a NUMA cell has (hugepages reserved, or base pages)."""

    size_kib: int
    count: int


@dataclass(frozen=True, slots=True)
class NumaCell(_Serializable):
    id: int
    memory_kib: int | None
    cpus: tuple[int, ...]
    pages: tuple[PageCount, ...] = ()


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
    page_sizes_kib: tuple[int, ...] = ()
    # Firmware the hypervisor can boot guests with: "bios" and, where OVMF is installed, "efi".
    firmwares: tuple[str, ...] = ()


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


@dataclass(frozen=True, slots=True)
class DomainRecord(_Serializable):
    """Everything the inventory keeps about one domain, as libvirt last reported it.

    ``xml`` is the live definition and ``xml_inactive`` the persistent one where it differs (a running
    persistent domain), else empty; neither carries secrets. Sizes are KiB. ``security_label`` and
    ``security_model`` come from the first ``<seclabel>`` that carries a label.
    """

    uuid: str
    name: str
    state: str
    reason: str
    id: int | None
    vcpus: int | None
    memory_kib: int | None
    max_memory_kib: int | None
    autostart: bool
    persistent: bool
    xml: str
    has_managed_save: bool
    title: str | None
    description: str | None
    security_label: str | None
    security_model: str | None
    os_type: str | None
    arch: str | None
    domain_type: str | None
    xml_inactive: str = ""


@dataclass(frozen=True, slots=True)
class NetworkRecord(_Serializable):
    """A virtual network. ``forward_mode`` is libvirt's mode, or ``isolated`` without ``<forward>``."""

    uuid: str
    name: str
    active: bool
    autostart: bool
    persistent: bool
    bridge: str | None
    forward_mode: str
    xml: str
    xml_inactive: str = ""  # the persistent definition, when it differs from the running one


@dataclass(frozen=True, slots=True)
class PoolRecord(_Serializable):
    """A storage pool; sizes are bytes, and None while the pool is inactive (libvirt then says 0)."""

    uuid: str
    name: str
    type: str | None
    state: str
    autostart: bool
    persistent: bool
    capacity: int | None
    allocation: int | None
    available: int | None
    target_path: str | None
    xml: str


@dataclass(frozen=True, slots=True)
class VolumeRecord(_Serializable):
    """A volume of an active pool; sizes are bytes."""

    pool_uuid: str
    name: str
    key: str
    path: str | None
    type: str | None
    format: str | None
    capacity: int | None
    allocation: int | None
    backing_path: str | None
    encryption: str | None = None  # "luks" for an encrypted volume (its <encryption format>)
    secret_uuid: str | None = None  # the libvirt secret holding its passphrase, when the host has one


@dataclass(frozen=True, slots=True)
class HostInventory(_Serializable):
    """One host's domains, networks, pools and volumes, each sorted by name."""

    domains: tuple[DomainRecord, ...]
    networks: tuple[NetworkRecord, ...]
    pools: tuple[PoolRecord, ...]
    volumes: tuple[VolumeRecord, ...]


@dataclass(frozen=True, slots=True)
class DomainStats(_Serializable):
    """Counters of one running domain; a figure libvirt did not report is None, never 0.

    Byte and time counters are totals since the guest started (sum over its disks or NICs), so a
    rate needs two samples. ``memory_used_kib`` is ``balloon.current - balloon.unused`` when the
    guest reports its free memory, else the QEMU process's RSS, else None.
    """

    uuid: str
    cpu_time_ns: int | None
    vcpus: int | None
    memory_kib: int | None
    memory_used_kib: int | None
    block_rd_bytes: int | None
    block_wr_bytes: int | None
    net_rx_bytes: int | None
    net_tx_bytes: int | None


@dataclass(frozen=True, slots=True)
class HostStats(_Serializable):
    """Host CPU time (ns, summed over all CPUs since boot) and memory (KiB); None when not reported."""

    cpu_kernel_ns: int | None
    cpu_user_ns: int | None
    cpu_idle_ns: int | None
    cpu_iowait_ns: int | None
    memory_total_kib: int | None
    memory_free_kib: int | None
    memory_buffers_kib: int | None
    memory_cached_kib: int | None


@dataclass(frozen=True, slots=True)
class KsmInfo(_Serializable):
    """Kernel same-page merging, from virNodeGetMemoryParameters; None for a value not reported."""

    shm_pages_shared: int | None
    shm_pages_sharing: int | None
    shm_pages_unshared: int | None
    shm_pages_volatile: int | None
    shm_full_scans: int | None
    shm_merge_across_nodes: bool | None
    shm_pages_to_scan: int | None
    shm_sleep_millisecs: int | None


@dataclass(frozen=True, slots=True)
class VirtEvent(_Serializable):
    """One libvirt event, named in lower case.

    ``kind`` is ``domain``, ``network`` or ``pool``. ``event`` is the lifecycle word (``defined``,
    ``started``, ``stopped``...) or ``reboot``, ``device-added``, ``device-removed``,
    ``metadata-changed``, ``refresh``. ``detail`` is the lifecycle detail (``booted``,
    ``destroyed``...), the device alias for device events, the metadata kind for
    ``metadata-changed``, and empty where libvirt has none. ``at`` is ``time.monotonic()`` on arrival.
    """

    kind: str
    uuid: str
    name: str
    event: str
    detail: str
    at: float
