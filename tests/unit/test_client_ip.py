"""The audit trail records the browser's address, believing X-Real-IP only from kvmweb's own proxy."""

import pytest
from django.test import RequestFactory

from kvmweb.actors import client_ip


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("", "198.51.100.7", "198.51.100.7"),  # gunicorn on a unix socket: only our nginx is there
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
        ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # a stranger cannot choose its address
        ("203.0.113.9", "", "203.0.113.9"),
        ("", "not-an-ip", None),
    ],
)
def test_client_ip(settings, peer, header, expected):  # type: ignore[no-untyped-def]
    settings.KVMWEB_PROXY_PEERS = ["127.0.0.1/32", "::1/128"]
    request = RequestFactory().get("/", REMOTE_ADDR=peer, HTTP_X_REAL_IP=header)
    assert client_ip(request) == expected


def test_compose_network_peers_are_believed_when_configured(settings):  # type: ignore[no-untyped-def]
    settings.KVMWEB_PROXY_PEERS = ["172.16.0.0/12"]
    request = RequestFactory().get("/", REMOTE_ADDR="172.18.0.5", HTTP_X_REAL_IP="198.51.100.7")
    assert client_ip(request) == "198.51.100.7"
