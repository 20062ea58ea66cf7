"""Which hosts to watch: the enabled rows of the hosts table, and what changed since the last look."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from hosts.models import Host
from kvmweb import virt

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostSpec:
    """What a watcher needs to know about a host. A new ``target`` means a new connection."""

    id: int
    name: str
    target: virt.HostTarget


@dataclass(frozen=True, slots=True)
class Plan:
    start: list[HostSpec] = field(default_factory=list)
    stop: list[int] = field(default_factory=list)
    # The URI or credentials changed: stop the old connection, then start a new one.
    restart: list[HostSpec] = field(default_factory=list)
    # Only the name changed: the connection stays.
    rename: list[HostSpec] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.start or self.stop or self.restart or self.rename)


def plan_changes(watched: Mapping[int, HostSpec], wanted: Mapping[int, HostSpec]) -> Plan:
    """Compare the hosts being watched with the hosts that should be."""
    plan = Plan()
    for host_id in sorted(watched.keys() - wanted.keys()):
        plan.stop.append(host_id)
    for host_id in sorted(wanted):
        spec, current = wanted[host_id], watched.get(host_id)
        if current is None:
            plan.start.append(spec)
        elif current.target != spec.target:
            plan.restart.append(spec)
        elif current.name != spec.name:
            plan.rename.append(spec)
    return plan


def enabled_hosts() -> dict[int, HostSpec]:
    """Every enabled host, read in one query. A row whose URI no longer validates is left out (and logged)."""
    specs = {}
    rows = Host.objects.filter(enabled=True).values_list("id", "name", "uri", "ssh_key_path", "tls_pki_path")
    for host_id, name, uri, keyfile, pkipath in rows:
        try:
            target = virt.HostTarget(uri=uri, keyfile=keyfile or None, pkipath=pkipath or None)
        except virt.VirtError as exc:
            log.warning("host %s: not watched: %s", name, exc.message)
            continue
        specs[host_id] = HostSpec(id=host_id, name=name, target=target)
    return specs
