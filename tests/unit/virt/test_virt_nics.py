"""NICs in the adapter: the <interface> XML for model, MAC, link, bandwidth and port group (pinned), the
update XML handed to updateDevice, reading NICs back, and the addresses libvirt reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from kvmweb import virt
from kvmweb.virt.devices import IpAddress, NicAddresses, get_interface_addresses, update_nic
from kvmweb.virt.xml import NicSpec, domain_devices, interface_element, parse_xml
from kvmweb.virt.xml.bandwidth import Bandwidth, Rate
from kvmweb.virt.xml.domain_edit import NicChange, interface_update_xml

LIMITS = Bandwidth(inbound=Rate(1000, 2000, 1024), outbound=Rate(500))

RUNNING_NIC = """<interface type='network'>
  <mac address='52:54:00:12:34:56'/>
  <source network='lab' portgroup='v10' bridge='virbr77'/>
  <target dev='vnet3'/>
  <model type='virtio'/>
  <bandwidth><inbound average='10'/></bandwidth>
  <alias name='net1'/>
  <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>
</interface>"""


def _xml(nic: NicSpec) -> str:
    return ET.tostring(interface_element(nic), encoding="unicode")


# -- building ------------------------------------------------------------------------------------


def test_a_nic_with_every_setting_is_written_as_libvirt_expects() -> None:
    nic = NicSpec(
        network="lab", portgroup="v10", mac="52:54:00:AB:CD:EF", model="rtl8139", link="down", bandwidth=LIMITS
    )

    assert _xml(nic) == (
        '<interface type="network"><mac address="52:54:00:ab:cd:ef" />'
        '<source network="lab" portgroup="v10" /><model type="rtl8139" />'
        '<bandwidth><inbound average="1000" peak="2000" burst="1024" /><outbound average="500" /></bandwidth>'
        '<link state="down" /></interface>'
    )


def test_a_plain_nic_has_no_link_or_bandwidth_element() -> None:
    assert _xml(NicSpec(network="default", model="e1000")) == (
        '<interface type="network"><source network="default" /><model type="e1000" /></interface>'
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: NicSpec(network="a", link="sideways"), "Link state must be one of"),  # type: ignore[arg-type]
        (lambda: Rate(0), r"Average rate \(kB/s\) must be a whole number from 1"),
        (lambda: Rate(100, peak=50), r"peak rate \(50 kB/s\) is below the average rate \(100 kB/s\)"),
        (lambda: Rate(100, burst=-1), r"Burst \(KiB\) must be a whole number"),
        (lambda: Rate(10**10), "must be a whole number from 1 to 4194303"),
        (lambda: NicChange(), "Say what to change"),
        (lambda: NicChange(portgroup="bad name"), "Port group"),
    ],
)
def test_bad_nic_settings_are_refused_with_a_message(make: Callable[[], object], message: str) -> None:
    with pytest.raises(virt.InvalidArgument, match=message):
        make()


# -- updating ------------------------------------------------------------------------------------


def test_the_update_keeps_the_device_and_changes_only_what_was_asked() -> None:
    updated = interface_update_xml(parse_xml(RUNNING_NIC), NicChange(link="down", bandwidth=LIMITS, portgroup=""))

    assert updated == (
        '<interface type="network">\n  <mac address="52:54:00:12:34:56" />\n'
        '  <source network="lab" bridge="virbr77" />\n  <target dev="vnet3" />\n  <model type="virtio" />\n'
        '  <bandwidth><inbound average="1000" peak="2000" burst="1024" /><outbound average="500" /></bandwidth>'
        '<alias name="net1" />\n'
        '  <address type="pci" domain="0x0000" bus="0x07" slot="0x00" function="0x0" />\n'
        '<link state="down" /></interface>'
    )


def test_empty_bandwidth_removes_the_limits_and_a_port_group_is_set() -> None:
    updated = parse_xml(interface_update_xml(parse_xml(RUNNING_NIC), NicChange(bandwidth=Bandwidth(), portgroup="v20")))

    assert updated.find("bandwidth") is None
    assert updated.find("source").get("portgroup") == "v20"  # type: ignore[union-attr]
    assert updated.find("link") is None  # not asked: libvirt's default stays


def test_a_bridge_nic_has_no_port_group_to_change() -> None:
    bridged = parse_xml("<interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br0'/></interface>")
    with pytest.raises(virt.InvalidArgument, match="Only an interface on a libvirt network has port groups"):
        interface_update_xml(bridged, NicChange(portgroup="v10"))


# -- reading back --------------------------------------------------------------------------------


def test_a_nics_bandwidth_link_and_tap_are_read_back() -> None:
    nic_xml = RUNNING_NIC.replace("<alias", "<link state='down'/><alias")
    domain = "<domain type='kvm'><name>x</name><devices>" + nic_xml + "</devices></domain>"

    (nic,) = domain_devices(domain).nics

    assert (nic.portgroup, nic.link_state, nic.target_dev) == ("v10", "down", "vnet3")
    assert nic.bandwidth == Bandwidth(inbound=Rate(10))
    assert nic.to_dict()["bandwidth"] == {"inbound": {"average": 10, "peak": None, "burst": None}, "outbound": None}


# -- on the test driver --------------------------------------------------------------------------


def test_addresses_of_running_vms_come_from_the_dhcp_lease(
    target: virt.HostTarget, define_scratch: Callable[..., virt.DomainSummary]
) -> None:
    running = next(d for d in virt.list_domains(target) if d.name == "test")
    stopped = define_scratch(nics=(NicSpec(network="default", mac="52:54:00:00:00:0b"),))

    found = get_interface_addresses(target, [running.uuid, stopped.uuid, "00000000-0000-0000-0000-00000000dead"])

    assert found == {
        running.uuid: (
            NicAddresses(
                mac="aa:bb:cc:dd:ee:ff",
                name="testnet0",
                source="lease",
                addresses=(IpAddress(type="ipv4", address="192.168.122.3", prefix=24),),
            ),
        )
    }
    assert found[running.uuid][0].to_dict() == {
        "mac": "aa:bb:cc:dd:ee:ff",
        "name": "testnet0",
        "source": "lease",
        "addresses": [{"type": "ipv4", "address": "192.168.122.3", "prefix": 24}],
    }


def test_updating_a_nic_that_is_not_there_says_so(
    target: virt.HostTarget, define_scratch: Callable[..., virt.DomainSummary]
) -> None:
    vm = define_scratch(nics=(NicSpec(network="default", mac="52:54:00:00:00:0c"),))

    with pytest.raises(virt.NotFound, match="no network interface with MAC address 52:54:00:00:00:99"):
        update_nic(target, vm.uuid, "52:54:00:00:00:99", NicChange(link="down"))


def test_the_test_driver_cannot_update_a_nic_and_nothing_changes(
    target: virt.HostTarget, define_scratch: Callable[..., virt.DomainSummary]
) -> None:
    vm = define_scratch(nics=(NicSpec(network="default", mac="52:54:00:00:00:0d"),))
    before = virt.get_domain_xml(target, vm.uuid, inactive=True)

    with pytest.raises(virt.Unsupported, match="not supported by the connection driver"):
        update_nic(target, vm.uuid, "52:54:00:00:00:0D", NicChange(link="down"))

    assert virt.get_domain_xml(target, vm.uuid, inactive=True) == before
