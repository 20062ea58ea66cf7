"""The network adapter on libvirt's test driver: define, start, stop, autostart, undefine, XML, interfaces."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kvmweb import virt
from kvmweb.virt import networks
from kvmweb.virt.xml.network_spec import IpSpec, NetworkSpec
from kvmweb.virt.xml.network_xml import build_network_xml


@pytest.fixture
def name(target: virt.HostTarget) -> Iterator[str]:
    chosen = f"net-{uuid.uuid4().hex[:8]}"
    yield chosen
    found = networks.get_network_uuid(target, chosen)
    if found:
        networks.undefine_network(target, found)


def _spec(name: str) -> NetworkSpec:
    return NetworkSpec(name=name, mode="nat", ipv4=IpSpec("10.91.0.1", 24, "10.91.0.10", "10.91.0.20"))


def test_a_defined_network_is_inactive_until_started_then_stops(target: virt.HostTarget, name: str) -> None:
    record = networks.define_network(target, _spec(name))
    assert (record.name, record.active, record.persistent, record.forward_mode) == (name, False, True, "nat")
    assert networks.start_network(target, record.uuid).active is True
    assert networks.stop_network(target, record.uuid).active is False


def test_autostart_turns_on_and_off(target: virt.HostTarget, name: str) -> None:
    record = networks.define_network(target, _spec(name))
    assert networks.set_network_autostart(target, record.uuid, True).autostart is True
    assert networks.set_network_autostart(target, record.uuid, False).autostart is False


def test_defining_a_taken_name_is_refused(target: virt.HostTarget, name: str) -> None:
    networks.define_network(target, _spec(name))
    with pytest.raises(virt.AlreadyExists, match=name):
        networks.define_network(target, _spec(name))


def test_raw_xml_defines_and_undefine_removes_a_running_network(target: virt.HostTarget, name: str) -> None:
    record = networks.define_network(target, build_network_xml(_spec(name)))
    networks.start_network(target, record.uuid)
    networks.undefine_network(target, record.uuid)
    assert networks.get_network_uuid(target, name) is None
    with pytest.raises(virt.NotFound):
        virt.get_network_record(target, record.uuid)


def test_inactive_xml_is_read_and_redefined_keeping_the_uuid(target: virt.HostTarget, name: str) -> None:
    record = networks.define_network(target, _spec(name))
    xml = definition(target, record.uuid)
    assert record.uuid in xml
    changed = networks.redefine_network(target, record.uuid, xml.replace("10.91.0.20", "10.91.0.30"))
    assert changed.uuid == record.uuid and "10.91.0.30" in changed.xml


def test_redefining_with_another_name_is_refused(target: virt.HostTarget, name: str) -> None:
    record = networks.define_network(target, _spec(name))
    xml = definition(target, record.uuid).replace(f"<name>{name}</name>", "<name>other</name>")
    with pytest.raises(virt.InvalidArgument, match="Keep the network's <name>"):
        networks.redefine_network(target, record.uuid, xml)


def test_host_interfaces_are_listed_with_state_and_addresses(target: virt.HostTarget) -> None:
    found = networks.list_host_interfaces(target)
    assert found is not None
    eth1 = next(i for i in found if i.name == "eth1")
    assert (eth1.type, eth1.active, eth1.mac, eth1.addresses) == (
        "ethernet",
        True,
        "aa:bb:cc:dd:ee:ff",
        ("192.168.0.5/24",),
    )


def test_bridge_names_include_the_networks_bridges(target: virt.HostTarget) -> None:
    assert "virbr0" in networks.bridge_names(target)


def definition(target: virt.HostTarget, uuid: str) -> str:
    """What the XML editor edits: the persistent definition, as the inventory reads it."""
    record = virt.get_network_record(target, uuid)
    return record.xml_inactive or record.xml
