"""Where the console proxy connects for a VM: resolved by the web app from what the database keeps.

Local hosts' guests listen on a unix socket beside the proxy. A remote host's guests listen on its
console address (Host.console_address, else the host name in its URI): an address on the host that the
proxy can reach, which should be on a private management network, since VNC there is unauthenticated.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from hosts.models import Host
from kvmweb.errors import Conflict
from kvmweb.virt.xml import parse_xml
from vms.models import VirtualMachine

RUNNING = {"running", "paused", "blocked", "pmsuspended", "shutdown"}
HOSTNAME_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
SET_IT = "set the host's console address (Hosts → Edit) to its IP on the management network"


def host_is_local(uri: str) -> bool:
    """A URI without a host name (qemu:///system) means libvirtd on this machine, as does localhost."""
    return (urlsplit(uri).hostname or "localhost") in ("localhost", "127.0.0.1", "::1")


def console_address(host: Host) -> str:
    """What the proxy connects to for a remote host's guests: its console address, else the URI's host name."""
    return host.console_address or urlsplit(host.uri).hostname or ""


def console_address_error(address: str, *, uri: str) -> str | None:
    """Why `address` cannot be this host's console address, or None if it can (empty means the default)."""
    if not address:
        return None
    if host_is_local(uri):
        return "Leave this empty for a local host: its guests' consoles use a unix socket."
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if address.rstrip(".").lower() == "localhost":
            return _ip_error(ipaddress.ip_address("127.0.0.1"))
        return None if _is_hostname(address) else "Give an IP address or a host name, e.g. 10.0.0.5."
    return _ip_error(ip)


def _is_hostname(name: str) -> bool:
    labels = name.removesuffix(".").split(".")
    return len(name) <= 253 and all(HOSTNAME_LABEL_RE.match(label) for label in labels)


def _ip_error(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    # No wildcard, not even on request: VNC would then listen, unauthenticated, on every interface
    # of the host, public ones included.
    if ip.is_unspecified:
        return f"{ip} would open the guests' VNC on every interface of the host; give its management address."
    if ip.is_loopback:
        return f"{ip} is the host's loopback, which kvmweb's console proxy cannot reach."
    if ip.is_multicast or ip.is_link_local:
        return f"{ip} is not an address kvmweb's console proxy can connect to."
    return None


def vnc_listen_ip(host: Host) -> str:
    """The IP a new guest's VNC listens on, on a remote host: its console address as resolved here,
    where the proxy connects (libvirt would resolve a name on the host, perhaps to its loopback)."""
    name = console_address(host)
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    try:
        ip = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0]
    except (socket.gaierror, UnicodeError) as exc:
        raise Conflict(f"{host.name}'s console address {name} does not resolve ({exc}); {SET_IT}.") from None
    if _ip_error(ipaddress.ip_address(ip)):
        raise Conflict(f"{host.name}'s console address {name} resolves to {ip}, which the proxy cannot use; {SET_IT}.")
    return str(ip)


def vnc_target(vm: VirtualMachine) -> dict[str, Any]:
    """{"socket": path} or {"host", "port"} for the VM's VNC console; Conflict says why there is none."""
    if vm.state not in RUNNING:
        raise Conflict(f"{vm.name} is {vm.get_state_display().lower()}: start it to see its screen.")
    graphics = _vnc_element(vm)
    if graphics is None:
        raise Conflict(f"{vm.name} has no VNC display. Add one in its XML to use the graphical console.")
    listen = graphics.find("listen")
    socket_path = graphics.get("socket") or (listen.get("socket") if listen is not None else None)
    local = host_is_local(vm.host.uri)
    if socket_path:
        if not local:
            raise Conflict(f"{vm.name}'s VNC listens on a socket on {vm.host.name}, which only that host can reach.")
        return {"socket": socket_path}
    # The live XML has the port only while the guest runs (autoport picks it at start).
    port = int(graphics.get("port") or -1)
    if port <= 0:
        raise Conflict(f"{vm.name}'s VNC display has no port yet; try again in a moment.")
    address = (listen.get("address") if listen is not None else None) or graphics.get("listen") or "127.0.0.1"
    host = "127.0.0.1" if local else _remote_address(vm, address)
    return {"host": host, "port": port}


def _vnc_element(vm: VirtualMachine) -> Any:
    if not vm.xml:
        return None
    return parse_xml(vm.xml).find("devices/graphics[@type='vnc']")


def _remote_address(vm: VirtualMachine, address: str) -> str:
    host = vm.host
    if _is_loopback(address):
        raise Conflict(
            f"This guest's VNC listens on {address} of host {host.name}, which kvmweb cannot reach. "
            f"Set {host.name}'s console address (Hosts → Edit), then make {vm.name} listen there "
            "(<listen type='address' address='…'/> in its XML), or use the serial console."
        )
    if address in ("0.0.0.0", "::"):  # noqa: S104 - reading a guest's listen address, not binding
        return console_address(host) or address
    return address


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address.rstrip(".").lower() == "localhost"
