"""What the inventory reads from libvirt's XML, for shapes the test driver cannot produce."""

from __future__ import annotations

import pytest

from kvmweb import virt
from kvmweb.virt.xml.facts import domain_facts, network_facts, pool_facts, volume_facts

QEMU_DOMAIN = """<domain type='kvm' id='7'>
  <name>web</name>
  <uuid>11111111-1111-4111-8111-111111111111</uuid>
  <title>Web</title>
  <memory unit='GiB'>4</memory>
  <currentMemory unit='MiB'>2048</currentMemory>
  <vcpu placement='static' current='2'>8</vcpu>
  <os><type arch='aarch64' machine='virt'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <seclabel model='dac' relabel='no'/>
    </disk>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'>
    <imagelabel>libvirt-11111111-1111-4111-8111-111111111111</imagelabel>
  </seclabel>
  <seclabel type='dynamic' model='dac' relabel='yes'>
    <label>+64055:+994</label>
    <imagelabel>+64055:+994</imagelabel>
  </seclabel>
</domain>"""


def test_domain_facts_from_a_qemu_domain() -> None:
    facts = domain_facts(QEMU_DOMAIN)

    assert (facts.domain_type, facts.os_type, facts.arch) == ("kvm", "hvm", "aarch64")
    assert (facts.title, facts.description) == ("Web", None)
    assert (facts.vcpus, facts.memory_kib, facts.max_memory_kib) == (2, 2097152, 4194304)
    # The first domain-level <seclabel> with a label (an image label will do); device ones are not the guest's.
    assert (facts.security_label, facts.security_model) == ("libvirt-11111111-1111-4111-8111-111111111111", "apparmor")


def test_unlabelled_guest_still_names_its_security_model() -> None:
    facts = domain_facts(
        "<domain type='kvm'><memory>1024</memory><vcpu>1</vcpu><seclabel type='none' model='selinux'/></domain>"
    )

    assert (facts.security_label, facts.security_model) == (None, "selinux")
    assert (facts.vcpus, facts.memory_kib, facts.max_memory_kib) == (1, 1024, 1024)
    assert (facts.os_type, facts.arch, facts.title) == (None, None, None)


@pytest.mark.parametrize(
    ("forward", "expected"),
    [
        ("", "isolated"),
        ("<forward/>", "nat"),
        ("<forward mode='nat'/>", "nat"),
        ("<forward mode='route' dev='eth0'/>", "route"),
        ("<forward mode='open'/>", "open"),
        ("<forward mode='bridge'/>", "bridge"),
        ("<forward mode='passthrough'><interface dev='eth1'/></forward>", "passthrough"),
    ],
)
def test_network_forward_mode(forward: str, expected: str) -> None:
    assert network_facts(f"<network><name>n</name>{forward}</network>").forward_mode == expected


def test_network_without_a_bridge_has_none() -> None:
    facts = network_facts(
        "<network><name>macvtap</name><forward mode='bridge'><interface dev='eth0'/></forward></network>"
    )

    assert (facts.bridge, facts.forward_mode) == (None, "bridge")


def test_pool_and_volume_sizes_honour_units() -> None:
    pool = pool_facts(
        "<pool type='logical'><capacity unit='GiB'>2</capacity><allocation>10</allocation>"
        "<available unit='bogus'>1</available><target><path>/dev/vg0</path></target></pool>"
    )
    volume = volume_facts(
        "<volume type='block'><name>lv0</name><key>abc</key><capacity unit='MiB'>1</capacity>"
        "<allocation unit='bytes'>512</allocation><target><path>/dev/vg0/lv0</path></target></volume>"
    )

    assert (pool.type, pool.capacity, pool.allocation, pool.available, pool.target_path) == (
        "logical",
        2147483648,
        10,
        None,
        "/dev/vg0",
    )
    assert (volume.type, volume.format, volume.capacity, volume.allocation, volume.backing_path) == (
        "block",
        None,
        1048576,
        512,
        None,
    )


def test_facts_refuse_entities() -> None:
    with pytest.raises(virt.UnsafeXML):
        domain_facts("<!DOCTYPE d [<!ENTITY x 'y'>]><domain><title>&x;</title></domain>")
