"""Fixtures for the adapter's tests: libvirt's in-process test driver, and no Django at all."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kvmweb import virt
from kvmweb.virt.xml import DiskSpec, DomainSpec, build_domain_xml
from tests.unit.virt.nodefile import NodeDomain, NodeNetwork, NodePool, write_node

# test:///default is one in-memory host shared by the whole process, holding one running domain
# named "test". Tests give what they define unique names and remove it afterwards.
DEFAULT_URI = "test:///default"

DefineScratch = Callable[..., virt.DomainSummary]


@pytest.fixture
def target() -> Iterator[virt.HostTarget]:
    yield virt.HostTarget(DEFAULT_URI)
    virt.close_all()


@pytest.fixture
def define_scratch(target: virt.HostTarget) -> Iterator[DefineScratch]:
    """Define shut-off domains (a spec, or scratch_spec overrides); all are removed after the test."""
    created: list[str] = []

    def define(spec: DomainSpec | None = None, **overrides: object) -> virt.DomainSummary:
        chosen = spec if spec is not None else scratch_spec(**overrides)
        summary = virt.define_domain(target, build_domain_xml(chosen))
        created.append(summary.uuid)
        return summary

    yield define
    for domain_uuid in created:
        _remove(target, domain_uuid)


@pytest.fixture
def make_spec() -> Callable[..., DomainSpec]:
    """scratch_spec, for tests that need a spec without defining it."""
    return scratch_spec


@pytest.fixture
def scratch_domain(define_scratch: DefineScratch) -> virt.DomainSummary:
    return define_scratch()


def scratch_spec(**overrides: object) -> DomainSpec:
    fields: dict[str, object] = {
        "name": f"scratch-{uuid.uuid4().hex[:12]}",
        "uuid": str(uuid.uuid4()),
        "memory_mib": 192,
        "vcpus": 1,
        "domain_type": "qemu",
        "disks": (DiskSpec(source_file="/var/lib/libvirt/images/scratch.qcow2"),),
        **overrides,
    }
    return DomainSpec(**fields)  # type: ignore[arg-type]


def _remove(target: virt.HostTarget, domain_uuid: str) -> None:
    try:
        if virt.domain_state(target, domain_uuid).state != "shutoff":
            virt.destroy_domain(target, domain_uuid)
        virt.undefine_domain(target, domain_uuid)
    except virt.NotFound:
        pass


MakeNode = Callable[..., virt.HostTarget]


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[MakeNode]:
    """A fake host from a test-driver node file (see nodefile.py); its connections are closed after."""
    count = 0

    def make(
        *,
        domains: tuple[NodeDomain, ...] = (),
        networks: tuple[NodeNetwork, ...] = (),
        pools: tuple[NodePool, ...] = (),
    ) -> virt.HostTarget:
        nonlocal count
        count += 1
        uri = write_node(tmp_path / f"node-{count}.xml", domains=domains, networks=networks, pools=pools)
        return virt.HostTarget(uri)

    yield make
    virt.close_all()
