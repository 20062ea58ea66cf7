"""The host's inventory in bulk: what the database indexes, so pages never have to ask libvirt.

``get_inventory`` reads a whole host with list calls whose cost does not grow with the number of
objects, plus one XML read per domain, network and volume and two reads per pool:

    domains   getAllDomainStats (state, vcpu, balloon; NOWAIT) + listAllDomains filtered by
              PERSISTENT, AUTOSTART and MANAGEDSAVE            4 calls, then XMLDesc per domain,
              and XMLDesc(INACTIVE) per running persistent domain
    networks  listAllNetworks, then filtered by ACTIVE, PERSISTENT, AUTOSTART
                                                               4 calls, then XMLDesc per network,
              and XMLDesc(INACTIVE) per running persistent network
    pools     listAllStoragePools, then filtered by ACTIVE, PERSISTENT, AUTOSTART
                                                               4 calls, then info + XMLDesc per pool
    volumes   listAllVolumes per active pool, then XMLDesc per volume

so at most 12 + D + R + N + M + 2P + A + V round trips for D domains (R of them running and
persistent), N networks (M of them running and persistent), P pools (A active) and V volumes (a
host without networks or pools skips their three filtered lists).

Only a running persistent domain or network has two definitions: the live one, and the persistent one it boots
with next, which edits change. A shut-off domain's live XML is its persistent definition and a
transient domain has none, so their ``xml_inactive`` is empty without a round trip. Neither read
asks for VIR_DOMAIN_XML_SECURE, so passwords stay on the host.

The volume XML is the cheapest way to a volume's format: it costs the host the same refresh as
``virStorageVolGetInfo`` and also carries type, sizes, path, backing store and encryption, which would
otherwise take ``info()`` plus ``path()`` on top of it.

Name, UUID and id of a listed object are read from the object libvirt returned, without a round
trip. An object removed between the listing and its XML read is left out: it is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import libvirt

from kvmweb.virt import lookup
from kvmweb.virt.connection import Connection, connect
from kvmweb.virt.errors import NotFound, Unsupported, translated
from kvmweb.virt.states import domain_state, pool_state
from kvmweb.virt.stats import all_domain_stats, domain_list_stats
from kvmweb.virt.target import HostTarget
from kvmweb.virt.types import DomainRecord, HostInventory, NetworkRecord, PoolRecord, VolumeRecord
from kvmweb.virt.xml.facts import domain_facts, network_facts, pool_facts, volume_facts

LibvirtObject = Any  # virDomain, virNetwork, virStoragePool or virStorageVol; never returned
T = TypeVar("T")

_DOMAIN_GROUPS = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_BALLOON

_NO_DOMAIN = frozenset({libvirt.VIR_ERR_NO_DOMAIN})
_NO_NETWORK = frozenset({libvirt.VIR_ERR_NO_NETWORK})
_NO_POOL = frozenset({libvirt.VIR_ERR_NO_STORAGE_POOL})
_POOL_STOPPED = frozenset({libvirt.VIR_ERR_OPERATION_INVALID})
_NO_VOLUME = frozenset({libvirt.VIR_ERR_NO_STORAGE_VOL})


def get_inventory(target: HostTarget) -> HostInventory:
    """Every domain, network, pool and active pool's volume on the host (see the module docstring)."""
    with connect(target) as conn:
        domains = _all_domains(conn)
        networks = _all_networks(conn)
        pools, live_pools = _all_pools(conn)
        volumes = [volume for pool_uuid, pool in live_pools for volume in _volumes_of(pool, pool_uuid)]
    return HostInventory(
        domains=tuple(sorted(domains, key=lambda record: record.name)),
        networks=tuple(sorted(networks, key=lambda record: record.name)),
        pools=tuple(sorted(pools, key=lambda record: record.name)),
        volumes=tuple(sorted(volumes, key=lambda record: (record.pool_uuid, record.name))),
    )


def get_domain_record(target: HostTarget, uuid: str) -> DomainRecord:
    """One domain, as get_inventory reports it (6 calls, 7 running and persistent; for a single event)."""
    with connect(target) as conn:
        dom = lookup.domain(conn, uuid)
        records = domain_list_stats(conn, [dom], _DOMAIN_GROUPS)
        if not records:
            raise NotFound("The virtual machine was not found.")
        [(_dom, stats)] = records
        xml = dom.XMLDesc(0)
        persistent = bool(dom.isPersistent())
        return _domain_record(
            dom,
            stats,
            xml,
            _inactive_xml(dom, xml, persistent),
            persistent=persistent,
            autostart=bool(dom.autostart()),
            has_managed_save=bool(dom.hasManagedSaveImage(0)),
        )


def get_network_record(target: HostTarget, uuid: str) -> NetworkRecord:
    """One network, as get_inventory reports it (5 calls)."""
    with connect(target) as conn:
        return network_record_now(lookup.network(conn, uuid))


def network_record_now(net: LibvirtObject) -> NetworkRecord:
    """A network object's record, read now (4 calls); for kvmweb.virt.networks too."""
    return _network_record(
        net,
        net.XMLDesc(0),
        active=bool(net.isActive()),
        persistent=bool(net.isPersistent()),
        autostart=bool(net.autostart()),
    )


def get_pool_record(target: HostTarget, uuid: str) -> PoolRecord:
    """One storage pool, as get_inventory reports it (5 calls)."""
    with connect(target) as conn:
        pool = lookup.pool(conn, uuid)
        return _pool_record(
            pool,
            pool.info(),
            pool.XMLDesc(0),
            persistent=bool(pool.isPersistent()),
            autostart=bool(pool.autostart()),
        )


def get_pool_volumes(target: HostTarget, pool_uuid: str) -> tuple[VolumeRecord, ...]:
    """The volumes of one pool (after a refresh event): 3 + V calls; an inactive pool lists none."""
    with connect(target) as conn:
        pool = lookup.pool(conn, pool_uuid)
        if not pool.isActive():
            return ()
        volumes = _volumes_of(pool, str(pool.UUIDString()))
    return tuple(sorted(volumes, key=lambda record: record.name))


# Domains


def _all_domains(conn: Connection) -> list[DomainRecord]:
    records = all_domain_stats(conn, _DOMAIN_GROUPS)
    persistent = _uuids(conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT))
    autostart = _uuids(conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART))
    managed_save = _uuids(conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE))
    domains = []
    for dom, stats in records:
        uuid = str(dom.UUIDString())
        xml = _unless_gone(_NO_DOMAIN, dom.XMLDesc, 0)
        inactive = None if xml is None else _unless_gone(_NO_DOMAIN, _inactive_xml, dom, xml, uuid in persistent)
        if xml is None or inactive is None:
            continue
        domains.append(
            _domain_record(
                dom,
                stats,
                xml,
                inactive,
                persistent=uuid in persistent,
                autostart=uuid in autostart,
                has_managed_save=uuid in managed_save,
            )
        )
    return domains


def _inactive_xml(dom: LibvirtObject, xml: str, persistent: bool) -> str:
    """The persistent definition where it can differ from the live ``xml`` (see the module docstring)."""
    return _next_definition(dom, xml, libvirt.VIR_DOMAIN_XML_INACTIVE, running=persistent and dom.ID() >= 0)


def _next_definition(obj: LibvirtObject, xml: str, flag: int, *, running: bool) -> str:
    """A running persistent domain's or network's next-boot definition, or "" when it is the live ``xml``."""
    if not running:
        return ""
    try:
        inactive = str(obj.XMLDesc(flag))
    except libvirt.libvirtError as exc:
        # libvirt's test driver knows no flags on networks; its networks have one definition anyway
        if exc.get_error_code() != libvirt.VIR_ERR_INVALID_ARG:
            raise
        return ""
    return "" if inactive == xml else inactive


def _domain_record(
    dom: LibvirtObject,
    stats: dict[str, Any],
    xml: str,
    xml_inactive: str,
    *,
    persistent: bool,
    autostart: bool,
    has_managed_save: bool,
) -> DomainRecord:
    facts = domain_facts(xml)
    state = domain_state(stats.get("state.state", libvirt.VIR_DOMAIN_NOSTATE), stats.get("state.reason", 0))
    domain_id = int(dom.ID())
    return DomainRecord(
        uuid=str(dom.UUIDString()),
        name=str(dom.name()),
        state=state.state,
        reason=state.reason,
        id=domain_id if domain_id >= 0 else None,
        # The stats are the live figures; drivers without the vcpu/balloon groups (test://, or a
        # guest skipped by NOWAIT) have the same numbers in the live XML.
        vcpus=_stat(stats, "vcpu.current", facts.vcpus),
        memory_kib=_stat(stats, "balloon.current", facts.memory_kib),
        max_memory_kib=_stat(stats, "balloon.maximum", facts.max_memory_kib),
        autostart=autostart,
        persistent=persistent,
        xml=xml,
        xml_inactive=xml_inactive,
        has_managed_save=has_managed_save,
        title=facts.title,
        description=facts.description,
        security_label=facts.security_label,
        security_model=facts.security_model,
        os_type=facts.os_type,
        arch=facts.arch,
        domain_type=facts.domain_type,
    )


def _stat(stats: dict[str, Any], key: str, fallback: int | None) -> int | None:
    value = stats.get(key)
    return int(value) if isinstance(value, int) else fallback


# Networks


def _all_networks(conn: Connection) -> list[NetworkRecord]:
    networks = _listed(lambda: conn.listAllNetworks(0))
    if not networks:
        return []
    active = _uuids(conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE))
    persistent = _uuids(conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_PERSISTENT))
    autostart = _uuids(conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART))
    records = []
    for net in networks:
        xml = _unless_gone(_NO_NETWORK, net.XMLDesc, 0)
        if xml is None:
            continue
        uuid = str(net.UUIDString())
        records.append(
            _network_record(net, xml, active=uuid in active, persistent=uuid in persistent, autostart=uuid in autostart)
        )
    return records


def _network_record(net: LibvirtObject, xml: str, *, active: bool, persistent: bool, autostart: bool) -> NetworkRecord:
    facts = network_facts(xml)
    return NetworkRecord(
        uuid=str(net.UUIDString()),
        name=str(net.name()),
        active=active,
        autostart=autostart,
        persistent=persistent,
        bridge=facts.bridge,
        forward_mode=facts.forward_mode,
        xml=xml,
        xml_inactive=_next_definition(net, xml, libvirt.VIR_NETWORK_XML_INACTIVE, running=active and persistent),
    )


# Pools and volumes


def _all_pools(conn: Connection) -> tuple[list[PoolRecord], list[tuple[str, LibvirtObject]]]:
    """Every pool's record, and the (uuid, pool) of those active enough to list volumes."""
    pools = _listed(lambda: conn.listAllStoragePools(0))
    if not pools:
        return [], []
    active = _uuids(conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE))
    persistent = _uuids(conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_PERSISTENT))
    autostart = _uuids(conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_AUTOSTART))
    records = []
    live = []
    for pool in pools:
        info = _unless_gone(_NO_POOL, pool.info)
        xml = None if info is None else _unless_gone(_NO_POOL, pool.XMLDesc, 0)
        if info is None or xml is None:
            continue
        uuid = str(pool.UUIDString())
        records.append(_pool_record(pool, info, xml, persistent=uuid in persistent, autostart=uuid in autostart))
        if uuid in active:
            live.append((uuid, pool))
    return records, live


def _pool_record(pool: LibvirtObject, info: list[int], xml: str, *, persistent: bool, autostart: bool) -> PoolRecord:
    # info: [state, capacity, allocation, available], sizes in bytes
    state = pool_state(info[0])
    facts = pool_facts(xml)
    # An inactive pool reports 0 for all three, which means "not known", not "empty".
    known = state != "inactive"
    return PoolRecord(
        uuid=str(pool.UUIDString()),
        name=str(pool.name()),
        type=facts.type,
        state=state,
        autostart=autostart,
        persistent=persistent,
        capacity=int(info[1]) if known else None,
        allocation=int(info[2]) if known else None,
        available=int(info[3]) if known else None,
        target_path=facts.target_path,
        xml=xml,
    )


def _volumes_of(pool: LibvirtObject, pool_uuid: str) -> list[VolumeRecord]:
    # The pool may have been stopped or removed since it was listed as active.
    volumes = _unless_gone(_NO_POOL | _POOL_STOPPED, pool.listAllVolumes, 0)
    records = []
    for vol in volumes or ():
        xml = _unless_gone(_NO_VOLUME, vol.XMLDesc, 0)
        if xml is not None:
            records.append(volume_record(vol, xml, pool_uuid))
    return records


def volume_record(vol: LibvirtObject, xml: str, pool_uuid: str) -> VolumeRecord:
    """A volume's record from its XML (name and key are read without a round trip)."""
    facts = volume_facts(xml)
    return VolumeRecord(
        pool_uuid=pool_uuid,
        name=str(vol.name()),
        key=str(vol.key()),
        path=facts.path,
        type=facts.type,
        format=facts.format,
        capacity=facts.capacity,
        allocation=facts.allocation,
        backing_path=facts.backing_path,
        encryption=facts.encryption,
        secret_uuid=facts.secret_uuid,
    )


# Helpers


def _uuids(objects: Iterable[LibvirtObject]) -> frozenset[str]:
    return frozenset(str(obj.UUIDString()) for obj in objects)


def _unless_gone(gone_codes: frozenset[int], call: Callable[..., T], *args: object) -> T | None:
    """``call(*args)``, or None when libvirt answers with one of ``gone_codes``: the object is gone."""
    try:
        return call(*args)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in gone_codes:
            return None
        raise


def _listed(call: Callable[[], list[LibvirtObject]]) -> list[LibvirtObject]:
    """A list call, or nothing when the host has no such driver (a host without networks or storage)."""
    try:
        with translated():
            return list(call())
    except Unsupported:
        return []
