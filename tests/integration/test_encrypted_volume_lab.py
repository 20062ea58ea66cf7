"""Encrypted (LUKS) qcow2 volumes for real: API -> Redis -> a Celery worker -> libvirtd in the lab.

The lab's libvirtd has a real secret driver (the test driver has none), so this is where a volume
secret is defined, found by its usage path, kept private, and removed with its volume; and where
qemu-img, run inside the lab's namespace, confirms the image on disk is LUKS-encrypted.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.audit.models import AuditEvent
from kvmweb.operations.models import Operation
from kvmweb.virt import secrets, volumes
from kvmweb.virt.errors import AlreadyExists
from kvmweb.virt.xml import domain_devices, parse_xml
from storage.models import Volume
from tests.integration import test_volumes_service_lab as volume_lab
from tests.lab.errors import LabError
from tests.lab.guests import POOL, ensure_guest, remove_guest, unique_guest_name
from tests.lab.hosts import LabHost
from tests.lab.virsh import virsh

pytestmark = pytest.mark.integration
MIB = 1024**2
PASSPHRASE = "lab-luks-passphrase-0451"
# The other volume tests' fixtures (a signed-in administrator and the lab host's rows; a unique name
# prefix whose volumes are deleted afterwards) and API helper.
setup = volume_lab.setup
prefix = volume_lab.prefix
post = volume_lab.post


@pytest.fixture
def named(prefix: str, lab_host: LabHost) -> Iterator[str]:
    """The other volume tests' unique name prefix (its volumes go afterwards), and the secrets of its paths too."""
    yield prefix
    for secret in secrets.list_secrets(lab_host.target):
        if secret.usage_type == "volume" and f"/{prefix}" in (secret.usage_id or ""):
            secrets.undefine_secret(lab_host.target, secret.uuid)


def qemu_img_info(lab: LabHost, path: str) -> dict[str, Any]:
    """`qemu-img info` run inside the lab's network namespace, as its libvirtd sees the file."""
    cmd = ["ip", "netns", "exec", lab.netns, "qemu-img", "info", "--output=json", "-U", path]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed (rc={done.returncode}): {done.stderr.strip()}")
    info: dict[str, Any] = json.loads(done.stdout)
    return info


def test_encrypted_volume_is_luks_on_disk_with_a_private_secret_and_delete_removes_both(setup, named) -> None:  # type: ignore[no-untyped-def]
    lab, name = setup["lab"], f"{named}-vault.qcow2"
    body = {"pool": setup["pool"].pk, "name": name, "size": 16, "unit": "MiB", "format": "qcow2"}

    op = post(setup, "/api/v1/volumes/", {**body, "encrypted": True, "passphrase": PASSPHRASE})

    assert op.status == "succeeded", (op.error, op.error_detail)
    volume = Volume.objects.get(pool=setup["pool"], name=name)
    secret_uuid = op.params["secret"]
    assert (volume.encryption, volume.secret_uuid) == ("luks", secret_uuid)
    # libvirt's view: the volume names the secret, and the secret's usage is the volume's path.
    xml = virsh(lab.uri, "vol-dumpxml", "--pool", POOL, name, timeout=30)
    assert "<encryption format='luks'>" in xml and f"uuid='{secret_uuid}'" in xml, xml
    secret = secrets.volume_secret(lab.target, volume.path)
    assert secret is not None and secret.uuid == secret_uuid
    assert (secret.usage_type, secret.usage_id, secret.private, secret.ephemeral) == (
        "volume",
        volume.path,
        True,
        False,
    )
    assert secret_uuid in {s.uuid for s in secrets.list_secrets(lab.target)}
    with pytest.raises(LabError, match="private"):  # private: not even the host's API gives the value back
        virsh(lab.uri, "secret-get-value", secret_uuid, timeout=30)
    # The file itself, as qemu reads it.
    info = qemu_img_info(lab, volume.path)
    assert info["format"] == "qcow2" and info["encrypted"] is True, info
    assert info["format-specific"]["data"]["encrypt"]["format"] == "luks", info
    # The passphrase is nowhere kvmweb writes.
    rows = json.dumps(
        [*Operation.objects.values(), *AuditEvent.objects.values(), *Volume.objects.values()], default=str
    )
    assert PASSPHRASE not in rows
    assert PASSPHRASE not in setup["log"].read_text()

    op = post(setup, f"/api/v1/volumes/{volume.pk}/actions/delete/", {"confirm": name})

    assert op.status == "succeeded", (op.error, op.error_detail)
    assert op.result["secret_removed"] == secret_uuid
    assert volumes.volume_by_path(lab.target, volume.path) is None
    assert secrets.get_secret(lab.target, secret_uuid) is None
    assert secrets.volume_secret(lab.target, volume.path) is None


def test_an_encrypted_volume_is_refused_clone_and_convert(setup, named) -> None:  # type: ignore[no-untyped-def]
    name = f"{named}-nocopy.qcow2"
    body = {"pool": setup["pool"].pk, "name": name, "size": 16, "unit": "MiB", "encrypted": True}
    op = post(setup, "/api/v1/volumes/", {**body, "passphrase": PASSPHRASE})
    assert op.status == "succeeded", (op.error, op.error_detail)
    volume = Volume.objects.get(pool=setup["pool"], name=name)

    for action in ("clone", "convert"):
        refused = setup["api"].post(
            f"/api/v1/volumes/{volume.pk}/actions/{action}/",
            {"name": f"{named}-copy"},
            content_type="application/json",
        )
        assert refused.status_code == 400, refused.content
        assert "kvmweb does not copy or convert encrypted volumes" in refused.json()["error"]["message"]
    # The adapter refuses too, for an encrypted volume the rows do not know about.
    with pytest.raises(virt.InvalidOperation, match="encrypted"):
        volumes.clone_volume(setup["lab"].target, POOL, volume.path, f"{named}-copy.raw", format="raw")


def test_a_running_vm_opens_an_encrypted_volume_attached_as_a_disk(setup, named, lab_host) -> None:  # type: ignore[no-untyped-def]
    guest_name, name = unique_guest_name("enc"), f"{named}-disk.qcow2"
    body = {"pool": setup["pool"].pk, "name": name, "size": 16, "unit": "MiB", "encrypted": True}
    try:
        guest = ensure_guest(lab_host, guest_name, data_disk=False, start=True, wait=True, timeout=90)
        op = post(setup, "/api/v1/volumes/", {**body, "passphrase": PASSPHRASE})
        assert op.status == "succeeded", (op.error, op.error_detail)
        host_reconcile(host=setup["host"], inventory=virt.get_inventory(setup["host"].virt_target()))
        volume = Volume.objects.get(pool=setup["pool"], name=name)

        op = post(setup, f"/api/v1/vms/{guest.uuid}/actions/attach-disk/", {"source": "existing", "volume": volume.pk})

        assert op.status == "succeeded", (op.error, op.error_detail)
        dev = op.result["target"]
        live = virsh(lab_host.uri, "dumpxml", guest.uuid, timeout=30)
        assert dev in {disk.target_dev for disk in domain_devices(live).disks}
        source = parse_xml(live).find(f"devices/disk/source[@file='{volume.path}']")
        assert source is not None, live
        assert source.find("encryption").get("format") == "luks"  # type: ignore[union-attr]
        assert source.find("encryption/secret").get("uuid") == volume.secret_uuid  # type: ignore[union-attr]
        # QEMU unlocked the image: it reports the guest's size, not the file's.
        blk = virsh(lab_host.uri, "domblkinfo", guest.uuid, dev, timeout=30)
        assert f"Capacity: {16 * MIB}" in " ".join(blk.split()), blk
    finally:
        remove_guest(lab_host, guest_name, delete_volume=False)


def test_the_adapter_defines_finds_refuses_a_second_and_undefines_a_volume_secret(lab_host, named) -> None:  # type: ignore[no-untyped-def]
    target, path = lab_host.target, f"/var/lib/libvirt/images/{named}-adapter.qcow2"

    made = secrets.define_volume_secret(target, path, PASSPHRASE)

    assert secrets.get_secret(target, made.uuid) == made
    assert made.description == f"kvmweb: passphrase of the encrypted volume {path}"
    with pytest.raises(AlreadyExists, match=made.uuid):
        secrets.define_volume_secret(target, path, "another passphrase")
    assert secrets.undefine_volume_secret(target, path) == made.uuid
    assert secrets.volume_secret(target, path) is None
    assert secrets.undefine_secret(target, made.uuid) is False
