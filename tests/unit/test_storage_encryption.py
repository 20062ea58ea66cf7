"""Encrypted (LUKS) qcow2 volumes through the service, API, worker and pages, on libvirt's test driver.

The test driver has no secret driver, so the host's secrets are a small in-memory stand-in installed
at the adapter boundary (kvmweb.virt.secrets); everything else (the volume with its <encryption>,
operations, audit, pages) is real. The real secret store is exercised on the lab
(tests/integration/test_encrypted_volume_lab.py). ada administers the host.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

import pytest
from django.test import Client

from kvmweb import virt
from kvmweb.audit.models import AuditEvent
from kvmweb.errors import Conflict, Invalid
from kvmweb.operations import tasks as operation_tasks
from kvmweb.operations.models import Operation
from kvmweb.virt import secrets
from kvmweb.virt import volumes as virt_volumes
from kvmweb.virt.errors import AlreadyExists, NotFound
from kvmweb.virt.xml import VolumeSpec
from storage.models import StoragePool, Volume
from storage.volumes import volume_action, volume_create
from tests.factories import make_host
from tests.runs import actor_of, run

# The volume tests' helpers, and their autouse fixture that removes what a test left on the test driver.
from tests.unit.test_storage_volumes import MIB, POOL, TARGET, TEST_URI, api, pool_row, reconcile
from tests.unit.test_storage_volumes import _clean_test_driver as _clean_test_driver
from vms.edit.checks import check_attach_disk
from vms.models import VirtualMachine

PASSPHRASE = "Tr0ub4dor&3-horse-battery"


class HostSecrets:
    """What libvirt's secret driver does for kvmweb: one secret per volume path, values never read back."""

    def __init__(self) -> None:
        self.by_uuid: dict[str, tuple[str, bytes]] = {}

    def define_volume_secret(self, target: virt.HostTarget, path: str, passphrase: str) -> secrets.SecretRecord:
        value = secrets.check_passphrase(passphrase).encode()
        if any(usage == path for usage, _ in self.by_uuid.values()):
            raise AlreadyExists(f"The host already has a secret for a volume at {path}.")
        made = str(uuid.uuid4())
        self.by_uuid[made] = (path, value)
        return self.record(made)

    def undefine_secret(self, target: virt.HostTarget, secret_uuid: str) -> bool:
        return self.by_uuid.pop(secret_uuid, None) is not None

    def record(self, secret_uuid: str) -> secrets.SecretRecord:
        path = self.by_uuid[secret_uuid][0]
        return secrets.SecretRecord(secret_uuid, "volume", path, None, ephemeral=False, private=True)

    def paths(self) -> list[str]:
        return [path for path, _ in self.by_uuid.values()]


@pytest.fixture
def host_secrets(monkeypatch: pytest.MonkeyPatch) -> HostSecrets:
    fake = HostSecrets()
    monkeypatch.setattr(secrets, "define_volume_secret", fake.define_volume_secret)
    monkeypatch.setattr(secrets, "undefine_secret", fake.undefine_secret)
    return fake


@pytest.fixture
def lab(db):  # type: ignore[no-untyped-def]
    host = make_host("testhost", uri=TEST_URI)
    reconcile(host)
    return host


def encrypted(name: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "size": 16, "unit": "MiB", "encrypted": True, "passphrase": PASSPHRASE, **more}


def create_encrypted(host: Any, user: Any, name: str) -> Volume:
    op = volume_create(actor=actor_of(user), pool=pool_row(host), data=encrypted(name))
    assert run(op).status == "succeeded", op.error
    return Volume.objects.get(pool__host=host, name=name)


def stored_text() -> str:
    """Every row the passphrase could leak into: operations, audit events, volumes."""
    rows = [
        *Operation.objects.values(),
        *AuditEvent.objects.values(),
        *Volume.objects.values(),
    ]
    return json.dumps(rows, default=str)


# --- create ------------------------------------------------------------------------------------------------------


def test_encrypted_volume_is_created_with_its_secret_and_the_passphrase_is_stored_nowhere(  # type: ignore[no-untyped-def]
    lab, ada, host_secrets, caplog, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(operation_tasks.run_operation, "apply_async", lambda **message: sent.append(message))
    caplog.set_level(logging.DEBUG)
    pool = pool_row(lab)

    with django_capture_on_commit_callbacks(execute=True):
        response = api(ada).post(
            "/api/v1/volumes/", {"pool": pool.pk, **encrypted("vault.qcow2")}, content_type="application/json"
        )

    assert response.status_code == 202, response.json()
    op = Operation.objects.get(pk=response.json()["operation"]["id"])
    (secret_uuid,) = host_secrets.by_uuid
    assert host_secrets.by_uuid[secret_uuid] == ("/default-pool/vault.qcow2", PASSPHRASE.encode())
    assert op.params == {
        "pool": pool.pk,
        "name": "vault.qcow2",
        "capacity": 16 * MIB,
        "format": "qcow2",
        "provisioning": "thin",
        "encryption": "luks",
        "secret": secret_uuid,
    }
    # The Celery message: id, kind and time limits only.
    assert sent == [{"args": [op.pk, "volume.create"], "queue": "default", "soft_time_limit": 3600, "time_limit": 3660}]

    assert run(op).status == "succeeded", op.error
    volume = Volume.objects.get(pool=pool, name="vault.qcow2")
    assert (volume.format, volume.encryption, volume.secret_uuid) == ("qcow2", "luks", secret_uuid)
    assert virt_volumes.volume_encryption_secret(TARGET, volume.path) == secret_uuid
    assert op.result["secret"] == secret_uuid

    assert PASSPHRASE not in stored_text()
    assert PASSPHRASE not in caplog.text
    assert PASSPHRASE not in response.content.decode()
    detail = api(ada).get(f"/api/v1/volumes/{volume.pk}/").json()
    assert (detail["encryption"], detail["secret_uuid"]) == ("luks", secret_uuid)


def test_the_create_form_posts_the_passphrase_and_the_page_shows_the_secret(lab, ada, host_secrets, queued):  # type: ignore[no-untyped-def]
    client, pool = Client(), pool_row(lab)
    client.force_login(ada)
    form = {**encrypted("paged.qcow2"), "encrypted": "1", "passphrase_confirm": PASSPHRASE, "format": "qcow2"}

    response = client.post(f"/storage/pools/{pool.pk}/volumes/new/", form)

    assert response.status_code == 302
    assert run(Operation.objects.get(kind="volume.create")).status == "succeeded"
    volume = Volume.objects.get(pool=pool, name="paged.qcow2")
    page = client.get(f"/storage/volumes/{volume.pk}/").content.decode()
    assert f'Encrypted (LUKS), secret <span class="kv-mono">{volume.secret_uuid}</span>' in page
    assert "is not copied or converted" in page and "Make the copy" not in page
    assert PASSPHRASE not in stored_text()
    pool_page = client.get(f"/storage/pools/{pool.pk}/").content.decode()
    assert 'name="passphrase"' in pool_page and 'type="password"' in pool_page


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (encrypted("raw.img", format="raw"), "Only qcow2 volumes can be encrypted"),
        (encrypted("short.qcow2", passphrase="short"), "8 to 1024 characters"),
        (encrypted("none.qcow2", passphrase=None), "8 to 1024 characters"),
        (encrypted("two.qcow2", passphrase_confirm="something-else"), "The two passphrases differ"),
        (encrypted("ctl.qcow2", passphrase="bell\x07ringing"), "without control characters"),
    ],
)
def test_bad_encryption_requests_are_refused_before_any_secret_exists(  # type: ignore[no-untyped-def]
    lab, ada, host_secrets, queued, data, words
):
    with pytest.raises(Invalid, match=re.escape(words)) as refused:
        volume_create(actor=actor_of(ada), pool=pool_row(lab), data=data)

    assert str(data["passphrase"]) not in refused.value.message
    assert host_secrets.by_uuid == {} and not Operation.objects.exists()


def test_a_pool_without_files_cannot_hold_an_encrypted_volume(lab, ada, host_secrets, queued):  # type: ignore[no-untyped-def]
    StoragePool.objects.filter(pk=pool_row(lab).pk).update(type="logical")

    with pytest.raises(Invalid, match="encrypted volumes go in directory"):
        volume_create(actor=actor_of(ada), pool=pool_row(lab), data=encrypted("lv.qcow2"))
    assert host_secrets.by_uuid == {}


def test_a_host_without_a_secret_driver_refuses_encryption_plainly(lab, ada, queued):  # type: ignore[no-untyped-def]
    # No stand-in here: the test driver itself answers that it has no secrets.
    with pytest.raises(Conflict, match="cannot hold secrets, so it cannot encrypt volumes"):
        volume_create(actor=actor_of(ada), pool=pool_row(lab), data=encrypted("nodriver.qcow2"))
    assert not Operation.objects.exists()


def test_an_existing_secret_for_the_path_is_never_replaced(lab, ada, host_secrets, queued):  # type: ignore[no-untyped-def]
    host_secrets.define_volume_secret(TARGET, "/default-pool/taken.qcow2", "someone else's phrase")

    with pytest.raises(Conflict, match="already has a secret"):
        volume_create(actor=actor_of(ada), pool=pool_row(lab), data=encrypted("taken.qcow2"))
    assert host_secrets.paths() == ["/default-pool/taken.qcow2"] and not Operation.objects.exists()


def test_the_secret_is_removed_when_the_operation_cannot_be_queued(lab, ada, host_secrets, queued):  # type: ignore[no-untyped-def]
    pool = pool_row(lab)
    volume_create(actor=actor_of(ada), pool=pool, data={"name": "busy.qcow2", "size": 16, "unit": "MiB"})

    with pytest.raises(Conflict, match="busy"):
        volume_create(actor=actor_of(ada), pool=pool, data=encrypted("busy.qcow2"))
    assert host_secrets.by_uuid == {}
    assert Operation.objects.count() == 1


def test_a_failed_create_removes_the_secret_it_was_given(lab, ada, host_secrets, queued):  # type: ignore[no-untyped-def]
    pool = pool_row(lab)
    op = volume_create(actor=actor_of(ada), pool=pool, data=encrypted("late.qcow2"))
    (secret_uuid,) = host_secrets.by_uuid
    # Someone makes the name on the host before the worker runs (the rows do not know it yet).
    virt_volumes.create_volume(TARGET, POOL, VolumeSpec(name="late.qcow2", capacity_bytes=MIB))

    assert run(op).status == "failed"
    assert "already has a volume named late.qcow2" in op.error
    assert f"Its secret {secret_uuid} was removed again." in op.error
    assert host_secrets.by_uuid == {}
    assert virt_volumes.volume_encryption_secret(TARGET, "/default-pool/late.qcow2") is None


# --- actions -----------------------------------------------------------------------------------------------------


def test_deleting_an_encrypted_volume_removes_its_secret_after_it(lab, ada, host_secrets, queued):  # type: ignore[no-untyped-def]
    volume = create_encrypted(lab, ada, "gone.qcow2")

    op = volume_action(actor=actor_of(ada), volume=volume, action="delete", params={"confirm": "gone.qcow2"})

    assert run(op).status == "succeeded", op.error
    assert op.result["secret_removed"] == volume.secret_uuid
    assert host_secrets.by_uuid == {}
    with pytest.raises(NotFound):
        virt_volumes.volume_encryption_secret(TARGET, volume.path)


def test_deleting_a_plain_volume_leaves_secrets_alone(lab, ada, host_secrets, queued):  # type: ignore[no-untyped-def]
    virt_volumes.create_volume(TARGET, POOL, VolumeSpec(name="plain.qcow2", capacity_bytes=MIB))
    reconcile(lab)
    other = host_secrets.define_volume_secret(TARGET, "/elsewhere/x.qcow2", "an unrelated phrase")
    volume = Volume.objects.get(pool__host=lab, name="plain.qcow2")

    op = volume_action(actor=actor_of(ada), volume=volume, action="delete", params={"confirm": "plain.qcow2"})

    assert run(op).status == "succeeded", op.error
    assert "secret_removed" not in op.result and list(host_secrets.by_uuid) == [other.uuid]


@pytest.mark.parametrize("action", ["clone", "convert"])
def test_an_encrypted_volume_is_not_cloned_or_converted(lab, ada, host_secrets, queued, action):  # type: ignore[no-untyped-def]
    volume = create_encrypted(lab, ada, f"{action}.qcow2")
    count = Operation.objects.count()

    with pytest.raises(Invalid, match=r"encrypted \(LUKS\); kvmweb does not copy or convert"):
        volume_action(actor=actor_of(ada), volume=volume, action=action, params={})
    assert Operation.objects.count() == count


def test_an_encrypted_volume_is_deleted_not_wiped(lab, ada, host_secrets, queued):  # type: ignore[no-untyped-def]
    volume = create_encrypted(lab, ada, "wipe.qcow2")

    with pytest.raises(Invalid, match="encrypted; delete it instead"):
        volume_action(actor=actor_of(ada), volume=volume, action="wipe", params={"confirm": "wipe.qcow2"})
    assert list(host_secrets.by_uuid) == [volume.secret_uuid]


def test_attaching_an_encrypted_volume_to_a_vm_names_its_secret(lab, ada, host_secrets, queued):  # type: ignore[no-untyped-def]
    volume = create_encrypted(lab, ada, "disk.qcow2")
    vm = VirtualMachine.objects.get(host=lab, name="test")

    clean = check_attach_disk(vm, {"source": "existing", "volume": volume.pk})

    assert clean["path"] == volume.path and clean["secret"] == volume.secret_uuid
    assert PASSPHRASE not in json.dumps(clean)


def test_an_encrypted_volume_without_a_known_secret_is_not_attached(lab, ada, host_secrets, queued):  # type: ignore[no-untyped-def]
    volume = create_encrypted(lab, ada, "lost.qcow2")
    Volume.objects.filter(pk=volume.pk).update(secret_uuid="")
    vm = VirtualMachine.objects.get(host=lab, name="test")

    with pytest.raises(Invalid, match=r"lost\.qcow2 is encrypted, but not as a LUKS qcow2 with a known secret"):
        check_attach_disk(vm, {"source": "existing", "volume": volume.pk})
