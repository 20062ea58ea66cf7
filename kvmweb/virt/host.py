"""Facts about a host: hardware, hypervisor and what guests it can run."""

from __future__ import annotations

from kvmweb.virt.capabilities import Capabilities, parse_capabilities, parse_firmwares
from kvmweb.virt.connection import Connection, connect
from kvmweb.virt.errors import Unsupported, translated
from kvmweb.virt.target import HostTarget
from kvmweb.virt.types import HostInfo


def version_string(number: int) -> str:
    """libvirt packs versions as major * 1_000_000 + minor * 1000 + micro."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def get_host_info(target: HostTarget) -> HostInfo:
    with connect(target) as conn:
        caps = parse_capabilities(conn.getCapabilities())
        # getInfo: [model, memory MiB, cpus, mhz, numa nodes, sockets per node, cores, threads]
        _model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
        hostname = str(conn.getHostname())
        libvirt_version = version_string(conn.getLibVersion())
        hypervisor = str(conn.getType())
        hypervisor_version = version_string(conn.getVersion())
        free_memory_kib = _free_memory_kib(conn)
        firmwares = _firmwares(conn, caps)
    return HostInfo(
        hostname=hostname,
        uri=target.uri,
        libvirt_version=libvirt_version,
        hypervisor=hypervisor,
        hypervisor_version=hypervisor_version,
        arch=caps.arch,
        cpu_model=caps.cpu_model,
        cpu_vendor=caps.cpu_vendor,
        sockets=int(nodes) * int(sockets),
        cores=int(cores),
        threads=int(threads),
        cpus=int(cpus),
        mhz=int(mhz) or None,
        memory_kib=int(memory_mib) * 1024,
        free_memory_kib=free_memory_kib,
        guests=caps.guests,
        numa_cells=caps.numa_cells,
        security_models=caps.security_models,
        virt_types=caps.virt_types,
        page_sizes_kib=caps.page_sizes_kib,
        firmwares=firmwares,
    )


def _free_memory_kib(conn: Connection) -> int | None:
    try:
        with translated():
            return int(conn.getFreeMemory()) // 1024
    except Unsupported:
        return None


def _firmwares(conn: Connection, caps: Capabilities) -> tuple[str, ...]:
    """What firmware guests of the host's own architecture can boot with (empty when unknown)."""
    virt_type = "kvm" if "kvm" in caps.virt_types else "qemu"
    try:
        with translated():
            text = conn.getDomainCapabilities(None, caps.arch, None, virt_type, 0)
    except Unsupported:
        return ()
    return parse_firmwares(str(text), caps.arch)
