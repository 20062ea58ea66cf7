from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from kvmweb import access, virt
from kvmweb.errors import NotVisible
from kvmweb.virt.xml.network_xml import NetworkInfo, network_info
from networks.models import Network

# One sentence a non-expert understands, per mode: kvmweb's six (the define form's), then libvirt's others.
MODE_SENTENCES = {
    "nat": "NAT: guests get private addresses from this network's DHCP and reach outside through the host's address.",
    "route": "Routed: guests have their own subnet, routed through the host without address translation.",
    "isolated": "Isolated: guests reach each other and the host, and nothing else.",
    "bridge": "Bridged: guests sit directly on the host's physical network and get addresses from its router.",
    "macvtap": "macvtap: guests share one of the host's network cards directly and appear on its LAN, but cannot "
    "talk to the host itself through it.",
    "openvswitch": "Open vSwitch: guests plug into an Open vSwitch bridge, where portgroups can put them on separate "
    "VLANs.",
    "open": "Open: routed without any firewall rules added by libvirt.",
    "private": "macvtap private: guests on the same NIC cannot reach each other.",
    "vepa": "macvtap VEPA: guest traffic goes through the external switch.",
    "passthrough": "macvtap passthrough: one guest gets the physical NIC.",
    "hostdev": "Host device: a physical function is handed to the guest.",
}
MODE_LABELS = {
    "nat": "NAT",
    "route": "Routed",
    "isolated": "Isolated",
    "bridge": "Bridged",
    "macvtap": "macvtap",
    "openvswitch": "Open vSwitch",
    "open": "Open",
}
MODE_ICONS = {"nat": "world", "route": "route", "open": "route", "isolated": "lock", "bridge": "affiliate",
              "macvtap": "plug-connected", "openvswitch": "switch-3"}  # fmt: skip


def network_details(network: Network) -> NetworkInfo | None:
    """The network's settings read from its last observed XML; None when there is none or it does not parse."""
    if not network.xml:
        return None
    try:
        return network_info(network.xml)
    except virt.VirtError:
        return None


def network_mode(network: Network) -> str:
    """kvmweb's mode word (nat, route, isolated, bridge, macvtap, openvswitch) or libvirt's own."""
    info = network_details(network)
    if info is not None:
        return info.mode
    return network.forward_mode if network.forward_mode not in ("", "none") else "isolated"


def mode_sentence(network: Network) -> str:
    mode = network_mode(network)
    return MODE_SENTENCES.get(mode, f"Forward mode {mode}.")


def annotate_modes(networks: list[Network]) -> list[Network]:
    """Set `mode`, `mode_label`, `mode_icon` and `mode_sentence` on each row, for the templates."""
    for network in networks:
        mode = network_mode(network)
        network.mode = mode  # type: ignore[attr-defined]
        network.mode_label = MODE_LABELS.get(mode, mode)  # type: ignore[attr-defined]
        network.mode_icon = MODE_ICONS.get(mode, "network")  # type: ignore[attr-defined]
        network.mode_sentence = MODE_SENTENCES.get(mode, f"Forward mode {mode}.")  # type: ignore[attr-defined]
    return networks


def network_list(user: AbstractBaseUser | AnonymousUser, *, host_id: int | None = None) -> QuerySet[Network]:
    networks = access.visible_networks(user).select_related("host")
    if host_id is not None:
        networks = networks.filter(host_id=host_id)
    return networks.order_by("host__name", "name")


def network_get(user: AbstractBaseUser | AnonymousUser, network_id: int) -> Network:
    network = access.visible_networks(user).select_related("host").filter(pk=network_id).first()
    if network is None:
        raise NotVisible("No such network.")
    return network
