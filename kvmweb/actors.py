"""Who asked for a change, and from where."""

from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest


@dataclass(frozen=True, slots=True)
class Actor:
    user: AbstractBaseUser | AnonymousUser | None
    ip: str | None

    @property
    def name(self) -> str:
        if self.user is None or not self.user.is_authenticated:
            return ""
        return self.user.get_username()


def _trusted_proxy(peer: str) -> bool:
    if not peer:  # a unix socket: only our own proxy can be on the other end
        return True
    try:
        address = ip_address(peer)
    except ValueError:
        return False
    return any(address in ip_network(cidr) for cidr in settings.KVMWEB_PROXY_PEERS)


def client_ip(request: HttpRequest) -> str | None:
    """The browser's address; our nginx puts it in X-Real-IP, believed only when it comes from a trusted proxy."""
    peer = request.META.get("REMOTE_ADDR", "") or ""
    candidate = peer
    if _trusted_proxy(peer):
        candidate = request.META.get("HTTP_X_REAL_IP", "") or peer
    try:
        return str(ip_address(candidate))
    except ValueError:
        return None


def actor_from_request(request: HttpRequest) -> Actor:
    return Actor(user=request.user, ip=client_ip(request))


SYSTEM = Actor(user=None, ip=None)


def actor_from_api(request: Any) -> Actor:
    """For a DRF request, whose user may come from a token rather than the session."""
    return Actor(user=request.user, ip=client_ip(request._request))
