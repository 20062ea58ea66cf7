"""A LUKS volume made with virsh, behind kvmweb's back, shows as encrypted and is guarded (issue 7).

The secret and the volume are defined with ``virsh`` only; kvmweb learns of them from the host's
inventory (the volume XML's ``<encryption>``), as it would for any volume made outside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.operations.models import Operation
from kvmweb.virt.secrets import build_volume_secret_xml, volume_secret
from kvmweb.virt.volumes import LUKS_ATTEMPTS
from kvmweb.virt.xml import VolumeSpec
from kvmweb.virt.xml.volume_xml import build_volume_xml
from storage.models import Volume
from tests.integration import test_encrypted_volume_lab as encrypted_lab
from tests.integration import test_volumes_service_lab as volume_lab
from tests.lab.errors import LabError
from tests.lab.guests import POOL
from tests.lab.hosts import LabHost
from tests.lab.virsh import virsh

pytestmark = pytest.mark.integration
MIB = 1024**2
# The volume tests' fixtures: an administrator and the lab host's rows; a unique name prefix whose
# volumes, and the secrets of their paths, are removed afterwards.
setup = volume_lab.setup
prefix = volume_lab.prefix
named = encrypted_lab.named


def virsh_luks_volume(lab: LabHost, pool_path: str, tmp_path: Path, name: str) -> str:
    """Define a volume secret and a LUKS qcow2 volume ``name`` with virsh; return the secret's UUID."""
    path = f"{pool_path}/{name}"
    secret_file, passphrase, volume_file = (tmp_path / f for f in ("secret.xml", "passphrase", "volume.xml"))
    secret_file.write_text(build_volume_secret_xml(path, description="made with virsh, outside kvmweb"))
    virsh(lab.uri, "secret-define", str(secret_file), timeout=30)
    secret = volume_secret(lab.target, path)
    assert secret is not None
    passphrase.write_text("outside-kvmweb-passphrase")
    virsh(lab.uri, "secret-set-value", secret.uuid, "--file", str(passphrase), "--plain", timeout=30)
    spec = VolumeSpec(name=name, capacity_bytes=16 * MIB, format="qcow2", encryption_secret=secret.uuid)
    volume_file.write_text(build_volume_xml(spec))
    vol_create(lab, volume_file)
    return secret.uuid


def vol_create(lab: LabHost, volume_file: Path) -> None:
    """``virsh vol-create`` in the lab pool, tried again (as kvmweb does) when qemu-img cannot time its key derivation.

    qemu-img times its LUKS key derivation in thread CPU time, which a loaded 2-core lab sometimes
    reports as 0 ms; it then refuses, and libvirt removes the half-made volume.
    """
    for attempt in range(LUKS_ATTEMPTS):
        try:
            virsh(lab.uri, "vol-create", POOL, str(volume_file), timeout=120)
            return
        except LabError as exc:
            if attempt == LUKS_ATTEMPTS - 1 or "Unable to get accurate CPU usage" not in str(exc):
                raise


def test_a_luks_volume_made_with_virsh_shows_as_encrypted_and_is_not_copied_or_wiped(  # type: ignore[no-untyped-def]
    setup, named, tmp_path
) -> None:
    name = f"{named}-outside.qcow2"
    secret = virsh_luks_volume(setup["lab"], setup["pool"].target_path, tmp_path, name)
    # A rescan re-reads the image from disk, as after a libvirtd restart.
    virsh(setup["lab"].uri, "pool-refresh", POOL, timeout=60)

    host_reconcile(host=setup["host"], inventory=virt.get_inventory(setup["host"].virt_target()))

    volume = Volume.objects.get(pool=setup["pool"], name=name)
    assert (volume.format, volume.encryption, volume.secret_uuid) == ("qcow2", "luks", secret)
    detail = setup["api"].get(f"/api/v1/volumes/{volume.pk}/").json()
    assert (detail["encryption"], detail["secret_uuid"]) == ("luks", secret)
    count = Operation.objects.count()
    for action, body, words in (
        ("clone", {"name": f"{named}-copy"}, "kvmweb does not copy or convert encrypted volumes"),
        ("convert", {"format": "raw"}, "kvmweb does not copy or convert encrypted volumes"),
        ("wipe", {"confirm": name}, "is encrypted; delete it instead"),
    ):
        refused = setup["api"].post(
            f"/api/v1/volumes/{volume.pk}/actions/{action}/", body, content_type="application/json"
        )
        assert refused.status_code == 400, refused.content
        assert words in refused.json()["error"]["message"]
    assert Operation.objects.count() == count
