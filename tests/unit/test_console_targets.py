"""Where the console proxy connects, resolved from the VM's XML in the database (no libvirt call)."""

from __future__ import annotations

import pytest

from consoles.targets import host_is_local, vnc_target
from kvmweb.errors import Conflict
from tests.factories import make_host, make_vm

SOCKET_XML = """<domain type='qemu'><name>a</name><devices>
<graphics type='vnc' socket='/run/vnc/a.sock' sharePolicy='force-shared'>
  <listen type='socket' socket='/run/vnc/a.sock'/>
</graphics>
</devices></domain>"""
PORT_XML = """<domain type='qemu'><name>b</name><devices>
<graphics type='vnc' port='5907' autoport='yes' listen='{address}'>
  <listen type='address' address='{address}'/>
</graphics>
</devices></domain>"""


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("qemu:///system", True),
        ("qemu:///session", True),
        ("qemu+ssh://root@localhost/system", True),
        ("qemu+ssh://admin@kvm2.example.com/system", False),
        ("qemu+tls://10.0.0.5/system", False),
    ],
)
def test_local_hosts_are_those_without_a_remote_hostname(uri, local):  # type: ignore[no-untyped-def]
    assert host_is_local(uri) is local


def test_a_local_socket_console(db):  # type: ignore[no-untyped-def]
    vm = make_vm(make_host("here", uri="qemu:///system"), "a", xml=SOCKET_XML)
    assert vnc_target(vm) == {"socket": "/run/vnc/a.sock"}


def test_a_remote_console_on_all_addresses_goes_to_the_hosts_name(db):  # type: ignore[no-untyped-def]
    vm = make_vm(
        make_host("far", uri="qemu+ssh://admin@kvm2.example.com/system"), "b", xml=PORT_XML.format(address="0.0.0.0")
    )
    assert vnc_target(vm) == {"host": "kvm2.example.com", "port": 5907}


def test_a_local_port_console_goes_to_loopback(db):  # type: ignore[no-untyped-def]
    vm = make_vm(make_host("here", uri="qemu:///system"), "b", xml=PORT_XML.format(address="127.0.0.1"))
    assert vnc_target(vm) == {"host": "127.0.0.1", "port": 5907}


@pytest.mark.parametrize(
    ("uri", "xml", "state", "message"),
    [
        ("qemu:///system", SOCKET_XML, "shutoff", "a is shut off: start it to see its screen."),
        ("qemu:///system", "<domain><name>a</name><devices/></domain>", "running", "a has no VNC display."),
        ("qemu+ssh://h/system", SOCKET_XML, "running", "which only that host can reach"),
        ("qemu+ssh://h/system", PORT_XML.format(address="127.0.0.1"), "running", "listens only on far's loopback"),
    ],
)
def test_why_there_is_no_console(db, uri, xml, state, message):  # type: ignore[no-untyped-def]
    vm = make_vm(make_host("far", uri=uri), "a", xml=xml, state=state)
    with pytest.raises(Conflict) as refused:
        vnc_target(vm)
    assert message in refused.value.message
