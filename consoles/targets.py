"""Where the console proxy connects for a VM: resolved by the web app from what the database keeps."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kvmweb.errors import Conflict
from kvmweb.virt.xml import parse_xml
from vms.models import VirtualMachine

RUNNING = {"running", "paused", "blocked", "pmsuspended", "shutdown"}


def host_is_local(uri: str) -> bool:
    """A URI without a host name (qemu:///system) means libvirtd on this machine, as does localhost."""
    return (urlsplit(uri).hostname or "localhost") in ("localhost", "127.0.0.1", "::1")


def vnc_target(vm: VirtualMachine) -> dict[str, Any]:
    """{"socket": path} or {"host", "port"} for the VM's VNC console; Conflict says why there is none."""
    if vm.state not in RUNNING:
        raise Conflict(f"{vm.name} is {vm.get_state_display().lower()}: start it to see its screen.")
    graphics = _vnc_element(vm)
    if graphics is None:
        raise Conflict(f"{vm.name} has no VNC display. Add one in its XML to use the graphical console.")
    listen = graphics.find("listen")
    socket = graphics.get("socket") or (listen.get("socket") if listen is not None else None)
    local = host_is_local(vm.host.uri)
    if socket:
        if not local:
            raise Conflict(f"{vm.name}'s VNC listens on a socket on {vm.host.name}, which only that host can reach.")
        return {"socket": socket}
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
    if address in ("127.0.0.1", "::1", "localhost"):
        raise Conflict(
            f"{vm.name}'s VNC listens only on {vm.host.name}'s loopback; "
            "make it listen on an address kvmweb can reach, or use the serial console."
        )
    if address in ("0.0.0.0", "::"):  # noqa: S104 - reading a guest's listen address, not binding
        return urlsplit(vm.host.uri).hostname or address
    return address
