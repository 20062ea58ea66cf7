"""Compressed qcow2 copies for real, on the lab's ``kvmweb-lab`` pool.

Raw data that compresses well (a repeated pattern, then a random MiB) is converted to a compressed
qcow2 through the API and a real worker: the copy is far smaller than an uncompressed conversion and
converts back to the same bytes. When qemu-img fails, neither a volume nor a temporary file is left.
The fixtures and helpers are test_storage_data_lab.py's, which take theirs from
test_volumes_service_lab.py.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from kvmweb.operations import services as operation_services
from kvmweb.operations.models import Operation
from kvmweb.virt import volume_compress, volumes
from kvmweb.virt.xml.volume_spec import human_size
from storage.models import Volume
from tests.integration import test_volumes_service_lab as volume_service
from tests.integration.test_storage_data_lab import convert, downloaded_digest, upload
from tests.integration.test_volumes_service_lab import post, vol_xml
from tests.lab.guests import POOL
from tests.runs import run

pytestmark = pytest.mark.integration
MIB = 1024**2
PHASES = ["Downloading", "Compressing", "Uploading"]

# That module's fixtures, used here as they are.
setup = volume_service.setup
prefix = volume_service.prefix


def compressible() -> bytes:
    pattern = b"kvmweb compresses this line again and again. "
    return (pattern * (32 * MIB // len(pattern) + 1))[: 32 * MIB] + os.urandom(MIB)


def phases(op: Operation) -> list[str]:
    """The phases the operation's log reports, in order."""
    messages = [line["message"] for line in op.log]
    return [phase for phase in PHASES if any(message.startswith(phase) for message in messages)]


def leftovers(directory: Path) -> list[Path]:
    return list(directory.glob("kvmweb-compress-*"))


def compressed(setup: dict[str, Any], volume: Volume, name: str, action: str) -> Operation:
    op = post(setup, f"/api/v1/volumes/{volume.pk}/actions/{action}/", {"name": name, "compress": True})
    assert op.status == "succeeded", (op.error, op.error_detail)
    return op


def test_raw_data_compressed_into_qcow2_is_far_smaller_and_reads_back_the_same(setup, prefix) -> None:  # type: ignore[no-untyped-def]
    data = compressible()
    source = upload(setup, f"{prefix}-src.img", data)
    plain = convert(setup, source, f"{prefix}-plain.qcow2", "qcow2")

    op = compressed(setup, source, f"{prefix}-small.qcow2", "convert")

    small = Volume.objects.get(pk=op.result["volume"])
    assert "<format type='qcow2'/>" in vol_xml(setup, small.name)
    assert (small.format, small.capacity) == ("qcow2", len(data))
    # The pattern compresses to almost nothing; only the random MiB takes its size.
    assert small.allocation * 4 < plain.allocation, (small.allocation, plain.allocation)
    back = convert(setup, small, f"{prefix}-back.img", "raw")
    assert downloaded_digest(setup, back) == hashlib.sha256(data).hexdigest()
    assert phases(op) == PHASES, op.log
    assert op.progress == 100 and "never removes it" in op.result["note"]
    assert Volume.objects.filter(pk=source.pk).exists()
    # The worker runs with this process's environment, so its temporary directory is this one's.
    assert leftovers(Path(tempfile.gettempdir())) == []


def test_a_qcow2_volume_cloned_with_compression_is_compacted_and_reads_back_the_same(setup, prefix) -> None:  # type: ignore[no-untyped-def]
    data = compressible()
    plain = convert(setup, upload(setup, f"{prefix}-src.img", data), f"{prefix}-plain.qcow2", "qcow2")

    op = compressed(setup, plain, f"{prefix}-compact.qcow2", "clone")

    compact = Volume.objects.get(pk=op.result["volume"])
    assert (compact.format, compact.capacity) == ("qcow2", len(data))
    assert compact.allocation * 4 < plain.allocation, (compact.allocation, plain.allocation)
    back = convert(setup, compact, f"{prefix}-back.img", "raw")
    assert downloaded_digest(setup, back) == hashlib.sha256(data).hexdigest()
    # A qcow2 volume comes down as its file, and the download counts to the file's length.
    length = human_size(setup["lab"].host_path(plain.path).stat().st_size)
    downloads = [line["message"] for line in op.log if line["message"].startswith("Downloading")]
    assert downloads[-1] == f"Downloading {plain.name}: {length} of {length}", downloads


def test_a_failing_qemu_img_leaves_no_volume_and_no_temporary_file(  # type: ignore[no-untyped-def]
    setup, prefix, monkeypatch, tmp_path
) -> None:
    source = upload(setup, f"{prefix}-src.img", compressible())
    # From here on operations run in this process, where qemu-img is replaced by a command that fails.
    monkeypatch.setattr(operation_services, "_enqueue", lambda *args: None)
    monkeypatch.setattr(volume_compress, "QEMU_IMG", "false")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    name = f"{prefix}-failed.qcow2"

    response = setup["api"].post(
        f"/api/v1/volumes/{source.pk}/actions/convert/",
        {"name": name, "compress": True},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    op = run(Operation.objects.get(pk=response.json()["operation"]["id"]))

    assert op.status == "failed"
    assert op.error == f"qemu-img could not compress {source.name} (exit status 1): it gave no reason"
    # It failed after the whole download, in the second phase.
    assert op.progress == 40 and phases(op) == ["Downloading"], op.log
    assert volumes.volume_in_pool(setup["lab"].target, POOL, name) is None
    assert not Volume.objects.filter(pool=setup["pool"], name=name).exists()
    assert list(tmp_path.iterdir()) == []
