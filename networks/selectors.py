from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from kvmweb import access
from kvmweb.errors import NotVisible
from networks.models import Network

# One sentence a non-expert understands, per libvirt forward mode.
MODE_SENTENCES = {
    "nat": "NAT: guests get private addresses from this network's DHCP and reach outside through the host's address.",
    "route": "Routed: guests have their own subnet, routed through the host without address translation.",
    "bridge": "Bridged: guests sit directly on the host's physical network and get addresses from its router.",
    "open": "Open: routed without any firewall rules added by libvirt.",
    "": "Isolated: guests reach each other and the host, and nothing else.",
    "none": "Isolated: guests reach each other and the host, and nothing else.",
    "private": "macvtap private: guests on the same NIC cannot reach each other.",
    "vepa": "macvtap VEPA: guest traffic goes through the external switch.",
    "passthrough": "macvtap passthrough: one guest gets the physical NIC.",
    "hostdev": "Host device: a physical function is handed to the guest.",
}


def mode_sentence(network: Network) -> str:
    return MODE_SENTENCES.get(network.forward_mode, f"Forward mode {network.forward_mode}.")


def network_list(user: AbstractBaseUser | AnonymousUser, *, host_id: int | None = None) -> QuerySet[Network]:
    networks = access.visible_networks(user).select_related("host").defer("xml")
    if host_id is not None:
        networks = networks.filter(host_id=host_id)
    return networks.order_by("host__name", "name")


def network_get(user: AbstractBaseUser | AnonymousUser, network_id: int) -> Network:
    network = access.visible_networks(user).select_related("host").filter(pk=network_id).first()
    if network is None:
        raise NotVisible("No such network.")
    return network
