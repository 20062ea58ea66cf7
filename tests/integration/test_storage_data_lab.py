"""Volume data for real, through the API and the real worker on the lab's ``kvmweb-lab`` pool.

Thin against full provisioning as the host allocates it; raw -> qcow2 -> raw conversion of known
random data compared by SHA-256; and a 64 MiB upload downloaded back byte for byte. The fixtures and
helpers are test_volumes_service_lab.py's: an admin's API client, the lab host indexed in kvmweb, a
worker process, and a name prefix whose volumes are removed afterwards.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from kvmweb.operations.models import Operation
from storage import uploads
from storage.models import Volume
from tests.integration import test_volumes_service_lab as volume_service
from tests.integration.test_volumes_service_lab import finish, post, vol_xml

pytestmark = pytest.mark.integration
MIB = 1024**2

# That module's fixtures, used here as they are.
setup = volume_service.setup
prefix = volume_service.prefix


def on_disk(setup: dict[str, Any], volume: Volume) -> int:
    """The bytes the host's file system has allocated to the volume's file."""
    return int(setup["lab"].host_path(volume.path).stat().st_blocks) * 512


def upload(setup: dict[str, Any], name: str, data: bytes) -> Volume:
    response = setup["api"].post(
        f"/api/v1/pools/{setup['pool'].pk}/upload/?name={name}&image_format=raw",
        data,
        content_type="application/octet-stream",
    )
    op = finish(setup, response)
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert not (uploads.upload_dir() / op.params["file"]).exists()
    return Volume.objects.get(pool=setup["pool"], name=name)


def downloaded_digest(setup: dict[str, Any], volume: Volume) -> str:
    response = setup["api"].get(f"/api/v1/volumes/{volume.pk}/download/")
    assert response.status_code == 200 and response.streaming
    digest = hashlib.sha256()
    for chunk in response.streaming_content:
        digest.update(chunk)
    return digest.hexdigest()


def convert(setup: dict[str, Any], volume: Volume, name: str, fmt: str) -> Volume:
    op = post(setup, f"/api/v1/volumes/{volume.pk}/actions/convert/", {"name": name, "format": fmt})
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert op.result["source"] == volume.pk
    return Volume.objects.get(pk=op.result["volume"])


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_a_full_volume_takes_its_whole_capacity_on_disk_and_a_thin_one_almost_nothing(setup, prefix, fmt) -> None:
    made = {}
    for provisioning in ("thin", "full"):
        name = f"{prefix}-{provisioning}.{fmt}"
        body = {"pool": setup["pool"].pk, "name": name, "size": 64, "unit": "MiB", "format": fmt}
        op = post(setup, "/api/v1/volumes/", {**body, "provisioning": provisioning})
        assert op.status == "succeeded", (op.error, op.error_detail)
        made[provisioning] = Volume.objects.get(pk=op.result["volume"])
    thin, full = made["thin"], made["full"]

    assert (thin.format, thin.capacity, full.format, full.capacity) == (fmt, 64 * MIB, fmt, 64 * MIB)
    # What kvmweb stored is what the host's file system says.
    assert full.allocation >= 64 * MIB and on_disk(setup, full) >= 64 * MIB
    assert thin.allocation < MIB and on_disk(setup, thin) < MIB
    # The API shows the same numbers, so the difference is visible to its users.
    shown = setup["api"].get(f"/api/v1/volumes/{thin.pk}/").json()
    assert (shown["capacity"], shown["allocation"]) == (thin.capacity, thin.allocation)


def test_raw_data_converted_to_qcow2_and_back_is_unchanged(setup, prefix) -> None:
    data = os.urandom(24 * MIB + 4096)  # not a whole number of qcow2 clusters, and no zeros to skip
    source = upload(setup, f"{prefix}-src.img", data)

    as_qcow2 = convert(setup, source, f"{prefix}-mid.qcow2", "qcow2")
    back = convert(setup, as_qcow2, f"{prefix}-back.img", "raw")

    assert "<format type='qcow2'/>" in vol_xml(setup, as_qcow2.name)
    assert (as_qcow2.format, back.format) == ("qcow2", "raw")
    assert as_qcow2.capacity == back.capacity == len(data)
    # The qcow2 file holds the data in clusters behind a header, not byte for byte.
    assert downloaded_digest(setup, as_qcow2) != hashlib.sha256(data).hexdigest()
    assert downloaded_digest(setup, back) == hashlib.sha256(data).hexdigest()
    # Neither conversion removed its source.
    assert Volume.objects.filter(pk__in=(source.pk, as_qcow2.pk)).count() == 2


def test_a_64_mib_upload_downloads_back_identical(setup, prefix) -> None:
    data = os.urandom(64 * MIB)

    volume = upload(setup, f"{prefix}-64.img", data)

    assert (volume.format, volume.capacity) == ("raw", 64 * MIB)
    op = Operation.objects.filter(kind=uploads.KIND).latest("pk")
    assert op.progress == 100 and any(line["message"].startswith("Sent 64") for line in op.log), op.log
    assert downloaded_digest(setup, volume) == hashlib.sha256(data).hexdigest()
