"""Which URIs kvmweb accepts, and how credentials' paths ride along in them."""

from __future__ import annotations

import pytest

from kvmweb import virt


@pytest.mark.parametrize(
    "uri",
    [
        "qemu:///system",
        "qemu:///session",
        "qemu+ssh://root@kvm1.example.org/system",
        "qemu+tls://kvm2.example.org/system",
        "qemu+tcp://10.0.0.5:16509/system",
        "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
        "test:///default",
        "test+unix:///default",
    ],
)
def test_supported_uris_are_returned_unchanged(uri: str) -> None:
    assert virt.validate_uri(uri) == uri


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "A libvirt URI is required, for example qemu:///system"),
        ("   ", "A libvirt URI is required, for example qemu:///system"),
        ("qemu:///system extra", "A libvirt URI cannot contain spaces or control characters."),
        ("qemu:///sys\ntem", "A libvirt URI cannot contain spaces or control characters."),
        ("/var/run/libvirt/libvirt-sock", "'/var/run/libvirt/libvirt-sock' is not a libvirt URI"),
        ("lxc:///", "Unsupported libvirt URI scheme 'lxc'"),
        ("qemu+ext://host/system", "Unsupported libvirt URI scheme 'qemu+ext'"),
        ("vbox:///session", "Unsupported libvirt URI scheme 'vbox'"),
    ],
)
def test_other_uris_are_refused_with_a_clear_message(uri: str, message: str) -> None:
    with pytest.raises(virt.InvalidArgument) as caught:
        virt.validate_uri(uri)

    assert caught.value.message.startswith(message)


def test_plain_target_uses_its_uri_as_is() -> None:
    assert virt.HostTarget("qemu:///system").effective_uri() == "qemu:///system"


def test_ssh_keyfile_is_added_url_encoded() -> None:
    target = virt.HostTarget("qemu+ssh://root@kvm1/system", keyfile="/etc/kvmweb/keys/kvm 1+id")

    assert target.effective_uri() == "qemu+ssh://root@kvm1/system?keyfile=/etc/kvmweb/keys/kvm%201%2Bid"


def test_keyfile_already_in_the_uri_is_replaced_not_repeated() -> None:
    target = virt.HostTarget(
        "qemu+ssh://root@kvm1/system?no_verify=1&keyfile=/old/key&known_hosts=/k",
        keyfile="/new/key",
    )

    assert target.effective_uri() == "qemu+ssh://root@kvm1/system?no_verify=1&known_hosts=/k&keyfile=/new/key"


def test_tls_pkipath_is_added() -> None:
    target = virt.HostTarget("qemu+tls://kvm2:16514/system", pkipath="/etc/kvmweb/pki/kvm2")

    assert target.effective_uri() == "qemu+tls://kvm2:16514/system?pkipath=/etc/kvmweb/pki/kvm2"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"uri": "qemu+tls://kvm2/system", "keyfile": "/k"}, "A SSH key file only applies to qemu+ssh:// URIs."),
        ({"uri": "qemu:///system", "pkipath": "/p"}, "A TLS certificate directory only applies to qemu+tls:// URIs."),
        ({"uri": "qemu+ssh://kvm1/system", "keyfile": "id_rsa"}, "The SSH key file must be an absolute path"),
    ],
)
def test_credential_paths_must_fit_the_transport(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(virt.InvalidArgument) as caught:
        virt.HostTarget(**kwargs)

    assert caught.value.message.startswith(message)


def test_equal_targets_are_one_cache_key() -> None:
    first = virt.HostTarget("qemu+ssh://kvm1/system", keyfile="/k")
    second = virt.HostTarget("qemu+ssh://kvm1/system", keyfile="/k")

    assert first == second
    assert len({first, second}) == 1
