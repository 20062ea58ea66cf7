"""Where the console proxy connects, resolved from the VM's XML in the database (no libvirt call), and
where the guests kvmweb defines listen for VNC."""

from __future__ import annotations

import pytest

from consoles.targets import console_address_error, host_is_local, vnc_listen_ip, vnc_target
from kvmweb.errors import Conflict
from kvmweb.virt.xml import DomainSpec, build_domain_xml, parse_xml
from tests.factories import make_host, make_vm
from vms.provision import _vnc

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


def test_a_remote_console_on_all_addresses_goes_to_the_console_address_when_set(db):  # type: ignore[no-untyped-def]
    host = make_host("far", uri="qemu+ssh://admin@kvm2.example.com/system", console_address="10.9.0.2")
    vm = make_vm(host, "b", xml=PORT_XML.format(address="0.0.0.0"))
    assert vnc_target(vm) == {"host": "10.9.0.2", "port": 5907}


def test_a_remote_console_goes_to_the_address_the_guest_listens_on(db):  # type: ignore[no-untyped-def]
    host = make_host("far", uri="qemu+tls://kvm2.example.com/system", console_address="10.9.0.2")
    vm = make_vm(host, "b", xml=PORT_XML.format(address="10.9.0.2"))
    assert vnc_target(vm) == {"host": "10.9.0.2", "port": 5907}


def test_a_remote_guest_on_loopback_says_what_to_change(db):  # type: ignore[no-untyped-def]
    vm = make_vm(make_host("far", uri="qemu+ssh://h/system"), "b", xml=PORT_XML.format(address="127.0.0.1"))
    with pytest.raises(Conflict) as refused:
        vnc_target(vm)
    assert refused.value.message == (
        "This guest's VNC listens on 127.0.0.1 of host far, which kvmweb cannot reach. "
        "Set far's console address (Hosts → Edit), then make b listen there "
        "(<listen type='address' address='…'/> in its XML), or use the serial console."
    )


def test_a_local_port_console_goes_to_loopback(db):  # type: ignore[no-untyped-def]
    vm = make_vm(make_host("here", uri="qemu:///system"), "b", xml=PORT_XML.format(address="127.0.0.1"))
    assert vnc_target(vm) == {"host": "127.0.0.1", "port": 5907}


@pytest.mark.parametrize(
    ("uri", "xml", "state", "message"),
    [
        ("qemu:///system", SOCKET_XML, "shutoff", "a is shut off: start it to see its screen."),
        ("qemu:///system", "<domain><name>a</name><devices/></domain>", "running", "a has no VNC display."),
        ("qemu+ssh://h/system", SOCKET_XML, "running", "which only that host can reach"),
        ("qemu+ssh://h/system", PORT_XML.format(address="::1"), "running", "listens on ::1 of host far"),
        ("qemu+ssh://h/system", PORT_XML.format(address="localhost"), "running", "listens on localhost of host far"),
        ("qemu+ssh://h/system", PORT_XML.format(address="10.0.0.1").replace("5907", "-1"), "running", "no port yet"),
    ],
)
def test_why_there_is_no_console(db, uri, xml, state, message):  # type: ignore[no-untyped-def]
    vm = make_vm(make_host("far", uri=uri), "a", xml=xml, state=state)
    with pytest.raises(Conflict) as refused:
        vnc_target(vm)
    assert message in refused.value.message


def _graphics(host):  # type: ignore[no-untyped-def]
    """The <graphics> element of a guest kvmweb would define on `host`, and its <listen> children's attributes."""
    spec = DomainSpec(name="g", memory_mib=64, vcpus=1, graphics=_vnc(host))
    graphics = parse_xml(build_domain_xml(spec)).find("devices/graphics")
    return dict(graphics.attrib), [dict(listen.attrib) for listen in graphics]


def test_new_guests_on_a_remote_host_listen_on_its_console_address(db):  # type: ignore[no-untyped-def]
    host = make_host("far", uri="qemu+ssh://admin@kvm2.example.com/system", console_address="10.9.0.2")
    assert _graphics(host) == (
        {"type": "vnc", "port": "-1", "autoport": "yes", "sharePolicy": "force-shared"},
        [{"type": "address", "address": "10.9.0.2"}],
    )


def test_new_guests_on_a_remote_host_default_to_the_uris_address(db):  # type: ignore[no-untyped-def]
    host = make_host("far", uri="qemu+tls://192.0.2.40/system")
    assert _graphics(host)[1] == [{"type": "address", "address": "192.0.2.40"}]


def test_new_guests_on_a_local_host_listen_on_a_unix_socket(db):  # type: ignore[no-untyped-def]
    host = make_host("here", uri="qemu:///system")
    assert _graphics(host) == ({"type": "vnc", "sharePolicy": "force-shared"}, [{"type": "socket"}])


def test_a_console_address_naming_loopback_is_refused_when_a_guest_is_defined(db):  # type: ignore[no-untyped-def]
    # "localhost" resolves from /etc/hosts: no query leaves this machine.
    host = make_host("far", uri="qemu+ssh://admin@kvm2.example.com/system", console_address="localhost")
    with pytest.raises(Conflict) as refused:
        vnc_listen_ip(host)
    message = refused.value.message
    assert message.startswith("far's console address localhost resolves to ") and "the proxy cannot use" in message


@pytest.mark.parametrize(
    ("address", "uri", "error"),
    [
        ("", "qemu+ssh://h/system", None),
        ("10.9.0.2", "qemu+ssh://h/system", None),
        ("fd00::2", "qemu+ssh://h/system", None),
        ("kvm2.mgmt.example.com", "qemu+tls://kvm2/system", None),
        ("10.9.0.2", "qemu:///system", "Leave this empty for a local host: its guests' consoles use a unix socket."),
        ("0.0.0.0", "qemu+ssh://h/system", "0.0.0.0 would open the guests' VNC on every interface of the host;"),
        ("::", "qemu+ssh://h/system", ":: would open the guests' VNC on every interface"),
        ("127.0.0.1", "qemu+ssh://h/system", "127.0.0.1 is the host's loopback"),
        ("localhost", "qemu+ssh://h/system", "127.0.0.1 is the host's loopback"),
        ("224.0.0.1", "qemu+ssh://h/system", "is not an address kvmweb's console proxy can connect to"),
        ("kvm 2", "qemu+ssh://h/system", "Give an IP address or a host name"),
        ("-kvm2.example", "qemu+ssh://h/system", "Give an IP address or a host name"),
    ],
)
def test_which_console_addresses_a_host_may_have(address, uri, error):  # type: ignore[no-untyped-def]
    found = console_address_error(address, uri=uri)
    assert found is None if error is None else error in (found or "")
