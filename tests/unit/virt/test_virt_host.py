"""Host facts, as the test driver reports them, with nothing invented."""

from __future__ import annotations

import json
import re

from kvmweb import virt
from kvmweb.virt.capabilities import parse_capabilities
from kvmweb.virt.host import version_string

QEMU_CAPABILITIES = """<capabilities>
  <host>
    <uuid>4c4c4544-0000-1000-8000-b2c04f4e3232</uuid>
    <cpu>
      <arch>x86_64</arch>
      <model>Skylake-Client-IBRS</model>
      <vendor>Intel</vendor>
      <topology sockets='1' dies='1' cores='4' threads='2'/>
    </cpu>
    <topology>
      <cells num='1'>
        <cell id='0'>
          <memory unit='KiB'>16255868</memory>
          <cpus num='2'>
            <cpu id='0' socket_id='0' core_id='0' siblings='0,1'/>
            <cpu id='1' socket_id='0' core_id='0' siblings='0,1'/>
          </cpus>
        </cell>
      </cells>
    </topology>
    <secmodel><model>apparmor</model><doi>0</doi></secmodel>
    <secmodel><model>dac</model><doi>0</doi></secmodel>
  </host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <domain type='qemu'/>
      <domain type='kvm'>
        <machine maxCpus='288'>pc-q35-7.2</machine>
      </domain>
    </arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'>
      <emulator>/usr/bin/qemu-system-i386</emulator>
      <machine maxCpus='255'>pc</machine>
      <domain type='qemu'/>
    </arch>
  </guest>
</capabilities>
"""


def test_host_info_reports_what_the_test_driver_says(target: virt.HostTarget) -> None:
    info = virt.get_host_info(target)

    assert info.hostname
    assert re.fullmatch(r"\d+\.\d+\.\d+", info.libvirt_version)
    facts = info.to_dict()
    del facts["hostname"], facts["libvirt_version"], facts["free_memory_kib"]
    assert facts == {
        "uri": "test:///default",
        "hypervisor": "TEST",
        "hypervisor_version": "0.0.2",
        "arch": "i686",
        "cpu_model": None,
        "cpu_vendor": None,
        "sockets": 4,
        "cores": 2,
        "threads": 2,
        "cpus": 16,
        "mhz": 1400,
        "memory_kib": 3145728,
        "guests": [
            {
                "os_type": "hvm",
                "arch": "i686",
                "domain_types": ["test"],
                "machines": [],
                "emulator": "/usr/bin/test-hv",
            },
            {
                "os_type": "xen",
                "arch": "i686",
                "domain_types": ["test"],
                "machines": [],
                "emulator": "/usr/bin/test-hv",
            },
        ],
        "numa_cells": [
            {
                "id": 0,
                "memory_kib": 2097152,
                "cpus": [0, 1, 2, 3, 4, 5, 6, 7],
                "pages": [
                    {"size_kib": 4, "count": 524288},
                    {"size_kib": 2048, "count": 0},
                    {"size_kib": 1048576, "count": 0},
                ],
            },
            {
                "id": 1,
                "memory_kib": 4194304,
                "cpus": [8, 9, 10, 11, 12, 13, 14, 15],
                "pages": [
                    {"size_kib": 8, "count": 524288},
                    {"size_kib": 2048, "count": 0},
                    {"size_kib": 1048576, "count": 0},
                ],
            },
        ],
        "security_models": [{"model": "testSecurity", "doi": ""}],
        "virt_types": ["test"],
        "page_sizes_kib": [4, 8, 2048, 1048576],
        "firmwares": [],  # the test driver has no domain capabilities
    }


def test_host_info_is_frozen_typed_and_json_ready(target: virt.HostTarget) -> None:
    info = virt.get_host_info(target)

    assert isinstance(info.numa_cells[0], virt.NumaCell)
    assert isinstance(info.free_memory_kib, int)
    assert json.loads(json.dumps(info.to_dict())) == info.to_dict()
    assert not hasattr(info, "__dict__")


def test_qemu_capabilities_are_read_into_guests_and_virt_types() -> None:
    caps = parse_capabilities(QEMU_CAPABILITIES)

    assert (caps.arch, caps.cpu_model, caps.cpu_vendor) == ("x86_64", "Skylake-Client-IBRS", "Intel")
    assert caps.virt_types == ("kvm", "qemu")
    assert caps.guests[0] == virt.GuestCapability(
        os_type="hvm",
        arch="x86_64",
        domain_types=("qemu", "kvm"),
        machines=("pc-i440fx-7.2", "pc", "pc-q35-7.2", "q35"),
        emulator="/usr/bin/qemu-system-x86_64",
    )
    assert caps.guests[1].arch == "i686"
    assert caps.numa_cells == (virt.NumaCell(id=0, memory_kib=16255868, cpus=(0, 1)),)
    assert caps.security_models == (
        virt.SecurityModel(model="apparmor", doi="0"),
        virt.SecurityModel(model="dac", doi="0"),
    )


def test_cell_memory_in_other_units_becomes_kib() -> None:
    caps = parse_capabilities(
        "<capabilities><host><topology><cells num='1'><cell id='3'>"
        "<memory unit='MiB'>2048</memory></cell></cells></topology></host></capabilities>"
    )

    assert caps.numa_cells == (virt.NumaCell(id=3, memory_kib=2097152, cpus=()),)
    assert caps.arch is None
    assert caps.virt_types == ()


def test_version_numbers_become_dotted_strings() -> None:
    assert version_string(9000000) == "9.0.0"
    assert version_string(7002001) == "7.2.1"
    assert version_string(2) == "0.0.2"


HUGEPAGE_CAPABILITIES = """<capabilities><host>
  <cpu>
    <arch>x86_64</arch>
    <pages unit='KiB' size='4'/>
    <pages unit='KiB' size='2048'/>
    <pages unit='GiB' size='1'/>
  </cpu>
  <topology><cells num='2'>
    <cell id='0'>
      <memory unit='KiB'>16384000</memory>
      <pages unit='KiB' size='4'>3047936</pages>
      <pages unit='KiB' size='2048'>1024</pages>
      <pages unit='KiB' size='1048576'>2</pages>
      <cpus num='1'><cpu id='0'/></cpus>
    </cell>
    <cell id='1'>
      <memory unit='KiB'>16384000</memory>
      <pages unit='KiB' size='4'>4096000</pages>
      <pages unit='KiB' size='2048'>junk</pages>
      <cpus num='1'><cpu id='1'/></cpus>
    </cell>
  </cells></topology>
</host></capabilities>"""


def test_hugepages_are_read_per_cell_and_for_the_host() -> None:
    caps = parse_capabilities(HUGEPAGE_CAPABILITIES)

    assert caps.page_sizes_kib == (4, 2048, 1048576)
    assert caps.numa_cells[0].pages == (
        virt.PageCount(size_kib=4, count=3047936),
        virt.PageCount(size_kib=2048, count=1024),
        virt.PageCount(size_kib=1048576, count=2),
    )
    # A count that is not a number is left out rather than guessed.
    assert caps.numa_cells[1].pages == (virt.PageCount(size_kib=4, count=4096000),)


def test_capabilities_without_pages_keep_the_old_shape() -> None:
    caps = parse_capabilities(QEMU_CAPABILITIES)

    assert caps.page_sizes_kib == ()
    assert caps.numa_cells[0].pages == ()
    assert virt.NumaCell(id=0, memory_kib=1, cpus=()).to_dict() == {"id": 0, "memory_kib": 1, "cpus": [], "pages": []}


def test_firmwares_come_from_the_domain_capabilities() -> None:
    from kvmweb.virt.capabilities import parse_firmwares

    with_ovmf = "<domainCapabilities><os><enum name='firmware'><value>efi</value></enum></os></domainCapabilities>"
    without = "<domainCapabilities><os><enum name='firmware'/></os></domainCapabilities>"
    assert parse_firmwares(with_ovmf, "x86_64") == ("bios", "efi")
    assert parse_firmwares(without, "x86_64") == ("bios",)
    assert parse_firmwares(with_ovmf, "aarch64") == ("efi",)
