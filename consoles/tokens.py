"""Console tokens: signed, short-lived and single-use.

The web app issues one after its access check; the console proxy (a separate process) verifies
the signature and expiry, redeems the nonce once in Redis, and only then connects. A token binds
the user, the VM, the resolved target, view-only, a nonce and its expiry, so none of them can be
changed or stretched. It carries no VNC password: nothing secret ever reaches the page.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core import signing

SALT = "kvmweb.consoles.token"
MAX_TTL = 60


class TokenRefused(Exception):
    """Why a token cannot open a console; `reason` is one word for logs and tests."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class ConsoleGrant:
    user: int
    vm: str
    kind: str  # "vnc" or "serial"
    # Where the proxy connects: {"socket": "/path"} on the proxy's machine, or {"host": ..., "port": ...}.
    target: dict[str, Any]
    view_only: bool
    expires: float
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))


def token_ttl() -> int:
    return max(1, min(int(getattr(settings, "KVMWEB_CONSOLE_TOKEN_TTL", 30)), MAX_TTL))


def grant_for(*, user: int, vm: str, kind: str, target: dict[str, Any], view_only: bool) -> ConsoleGrant:
    return ConsoleGrant(
        user=user, vm=vm, kind=kind, target=target, view_only=view_only, expires=time.time() + token_ttl()
    )


def sign(grant: ConsoleGrant) -> str:
    return signing.dumps(asdict(grant), salt=SALT, compress=True)


def verify(token: str, *, now: float | None = None) -> ConsoleGrant:
    """The grant inside `token`, if it is ours, untouched and unexpired (it may still be used: see `redeem`)."""
    try:
        data = signing.loads(token, salt=SALT)
        grant = ConsoleGrant(**data)
    except (signing.BadSignature, TypeError, ValueError):
        raise TokenRefused("tampered", "This console link is not valid.") from None
    if (now or time.time()) > grant.expires:
        raise TokenRefused("expired", "This console link has expired; open the console again.")
    return grant


def redeem(grant: ConsoleGrant, redis: Any) -> None:
    """Mark the nonce used, atomically; a second use is refused, whichever process tries."""
    key = f"{settings.KVMWEB_CHANNEL_PREFIX}:console:nonce:{grant.nonce}"
    ttl = max(1, int(grant.expires - time.time()) + 60)
    if not redis.set(key, "1", nx=True, ex=ttl):
        raise TokenRefused("used", "This console link was already used; open the console again.")
