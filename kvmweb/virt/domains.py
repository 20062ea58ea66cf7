"""Virtual machines (libvirt domains): listing, state and lifecycle."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import libvirt

from kvmweb.virt import lookup
from kvmweb.virt.connection import Connection, connect
from kvmweb.virt.errors import InvalidArgument, InvalidOperation, NotFound
from kvmweb.virt.states import domain_state as name_state
from kvmweb.virt.target import HostTarget
from kvmweb.virt.types import DomainState, DomainSummary
from kvmweb.virt.xml.safe import parse

Domain = Any  # a libvirt.virDomain; it never leaves this module

_STATS = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_BALLOON
# Without NOWAIT, one guest busy in a long job (a migration, a dump) stalls the whole listing.
_STATS_FLAGS = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT


def list_domains(target: HostTarget) -> list[DomainSummary]:
    """Every domain on the host, sorted by name, from three bulk calls."""
    with connect(target) as conn:
        records = conn.getAllDomainStats(_STATS, _STATS_FLAGS)
        persistent = _uuids(conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT))
        autostart = _uuids(conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART))
        summaries = [
            _summary(dom, stats, persistent=dom.UUIDString() in persistent, autostart=dom.UUIDString() in autostart)
            for dom, stats in records
        ]
    return sorted(summaries, key=lambda summary: summary.name)


def get_domain(target: HostTarget, uuid: str) -> DomainSummary:
    with connect(target) as conn:
        return _summary_of(conn, _lookup(conn, uuid))


def domain_state(target: HostTarget, uuid: str) -> DomainState:
    with connect(target) as conn:
        state, reason = _lookup(conn, uuid).state()
    return name_state(state, reason)


def get_domain_xml(target: HostTarget, uuid: str, *, inactive: bool = False) -> str:
    """The domain's XML; never with VIR_DOMAIN_XML_SECURE, so passwords stay on the host."""
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    with connect(target) as conn:
        return str(_lookup(conn, uuid).XMLDesc(flags))


def define_domain(target: HostTarget, xml: str) -> DomainSummary:
    """Define (or redefine, for a known UUID) a domain; libvirt checks it against its schema."""
    root = parse(xml)
    if root.tag != "domain":
        raise InvalidArgument(f"Expected a <domain> definition, got <{root.tag}>.")
    with connect(target) as conn:
        dom = conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
        return _summary_of(conn, dom)


def start_domain(target: HostTarget, uuid: str) -> None:
    """Boot the domain, or restore it when it has a managed save image (libvirt picks)."""
    with connect(target) as conn:
        dom = _lookup(conn, uuid)
        require_active(dom, False, "The virtual machine is already running.")
        dom.create()


def destroy_domain(target: HostTarget, uuid: str) -> None:
    """Power off at once, like pulling the plug."""
    with connect(target) as conn:
        _lookup(conn, uuid).destroy()


def set_autostart(target: HostTarget, uuid: str, *, enabled: bool) -> None:
    """Whether the host starts this domain when it boots."""
    with connect(target) as conn:
        _lookup(conn, uuid).setAutostart(1 if enabled else 0)


def undefine_domain(target: HostTarget, uuid: str, *, keep_nvram: bool = False) -> None:
    """Remove the definition with its managed save and snapshot metadata; a running guest keeps running, transient."""
    with connect(target) as conn:
        dom = _lookup(conn, uuid)
        # Without these flags libvirt refuses a guest that has a saved state or snapshots.
        flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        # libvirt refuses to undefine a guest with UEFI variables unless told what to do with
        # them; asking only when they exist keeps drivers without NVRAM support working.
        if _has_nvram(dom):
            keep = libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
            flags |= keep if keep_nvram else libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        dom.undefineFlags(flags)


def _lookup(conn: Connection, uuid: str) -> Domain:
    return lookup.domain(conn, uuid)


def require_active(dom: Domain, active: bool, message: str) -> None:
    """For this package's lifecycle functions: refuse plainly when the domain is (not) running."""
    # Drivers disagree on how to report this (qemu: operation-invalid; test: internal error),
    # so asking first gives callers the same answer on every host.
    if bool(dom.isActive()) != active:
        raise InvalidOperation(message)


def _has_nvram(dom: Domain) -> bool:
    root = parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    return root.find("os/nvram") is not None


def _uuids(domains: Iterable[Domain]) -> frozenset[str]:
    return frozenset(dom.UUIDString() for dom in domains)


def _summary_of(conn: Connection, dom: Domain) -> DomainSummary:
    records = conn.domainListGetStats([dom], _STATS, _STATS_FLAGS)
    if not records:
        raise NotFound("The virtual machine was not found.")
    [(_dom, stats)] = records
    return _summary(dom, stats, persistent=bool(dom.isPersistent()), autostart=bool(dom.autostart()))


def _summary(dom: Domain, stats: dict[str, int], *, persistent: bool, autostart: bool) -> DomainSummary:
    state = name_state(stats["state.state"], stats["state.reason"])
    vcpus, memory_kib, max_memory_kib = _sizes(dom, stats)
    domain_id = int(dom.ID())
    return DomainSummary(
        uuid=str(dom.UUIDString()),
        name=str(dom.name()),
        state=state.state,
        reason=state.reason,
        vcpus=vcpus,
        memory_kib=memory_kib,
        max_memory_kib=max_memory_kib,
        autostart=autostart,
        persistent=persistent,
        id=domain_id if domain_id >= 0 else None,
    )


def _sizes(dom: Domain, stats: dict[str, int]) -> tuple[int, int, int]:
    keys = ("vcpu.current", "balloon.current", "balloon.maximum")
    if all(key in stats for key in keys):
        return stats["vcpu.current"], stats["balloon.current"], stats["balloon.maximum"]
    # Drivers without the vcpu/balloon stats groups (test://, or a guest skipped by NOWAIT)
    # still answer virDomainGetInfo, which holds the same three numbers.
    _state, max_memory_kib, memory_kib, vcpus, _cpu_time = dom.info()
    return int(vcpus), int(memory_kib), int(max_memory_kib)
