"""Console tokens: signed, short-lived, single use; nothing in them can be changed or stretched."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import redis
from django.conf import settings

from consoles import tokens
from consoles.tokens import ConsoleGrant, TokenRefused
from tests.vnc import reforge


@pytest.fixture
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def grant(**fields) -> ConsoleGrant:  # type: ignore[no-untyped-def]
    defaults = {
        "user": 7,
        "vm": "11111111-1111-1111-1111-111111111111",
        "kind": "vnc",
        "target": {"socket": "/run/vnc/a.sock"},
        "view_only": False,
    }
    return tokens.grant_for(**{**defaults, **fields})


def test_a_signed_token_gives_back_its_grant():
    issued = grant(view_only=True)
    assert tokens.verify(tokens.sign(issued)) == issued


def test_tokens_last_at_most_sixty_seconds(settings):  # type: ignore[no-untyped-def]
    settings.KVMWEB_CONSOLE_TOKEN_TTL = 3600
    issued = grant()
    assert issued.expires - time.time() <= tokens.MAX_TTL


def test_an_expired_token_is_refused():
    issued = grant()
    with pytest.raises(TokenRefused) as refused:
        tokens.verify(tokens.sign(issued), now=issued.expires + 0.001)
    assert refused.value.reason == "expired"


def test_a_tampered_token_is_refused():
    token = tokens.sign(grant())
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(TokenRefused) as refused:
        tokens.verify(flipped)
    assert refused.value.reason == "tampered"


def test_a_token_signed_with_another_key_is_refused(settings):  # type: ignore[no-untyped-def]
    settings.SECRET_KEY = "another-server-" + "x" * 40
    token = tokens.sign(grant())
    settings.SECRET_KEY = "this-server-" + "y" * 40
    with pytest.raises(TokenRefused, match="not valid"):
        tokens.verify(token)


def test_the_reforge_helper_changes_the_payload_only():
    # Guards the tests below: an unchanged re-encoding still verifies, so a refusal there means the edit was seen.
    token = tokens.sign(grant())
    assert tokens.verify(reforge(token)) == tokens.verify(token)


def test_a_token_for_vm_a_cannot_be_turned_into_vm_b():
    token = tokens.sign(grant(vm="aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", target={"socket": "/run/vnc/a.sock"}))
    forged = reforge(token, vm="bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb", target={"socket": "/run/vnc/b.sock"})
    with pytest.raises(TokenRefused) as refused:
        tokens.verify(forged)
    assert refused.value.reason == "tampered"


@pytest.mark.parametrize(
    "changes",
    [{"view_only": False}, {"expires": time.time() + 3600}, {"user": 1}, {"target": {"host": "10.0.0.9", "port": 22}}],
    ids=["view-only", "expiry", "user", "target"],
)
def test_no_field_can_be_changed(changes):  # type: ignore[no-untyped-def]
    token = tokens.sign(grant(view_only=True))
    with pytest.raises(TokenRefused):
        tokens.verify(reforge(token, **changes))


def test_a_token_is_redeemed_once(client):  # type: ignore[no-untyped-def]
    issued = tokens.verify(tokens.sign(grant()))
    tokens.redeem(issued, client)
    with pytest.raises(TokenRefused) as refused:
        tokens.redeem(issued, client)
    assert refused.value.reason == "used"


def test_each_token_has_its_own_nonce(client):  # type: ignore[no-untyped-def]
    first, second = grant(), grant()
    assert first.nonce != second.nonce
    tokens.redeem(first, client)
    tokens.redeem(second, client)  # not refused: another token for the same VM


def test_the_used_nonce_is_forgotten_only_after_the_token_expired(client):  # type: ignore[no-untyped-def]
    issued = grant()
    tokens.redeem(issued, client)
    key = f"{settings.KVMWEB_CHANNEL_PREFIX}:console:nonce:{issued.nonce}"
    assert client.ttl(key) >= int(issued.expires - time.time())


def test_a_grant_with_extra_fields_is_refused():
    token = tokens.sign(replace(grant()))
    with pytest.raises(TokenRefused):
        tokens.verify(reforge(token, admin=True))
