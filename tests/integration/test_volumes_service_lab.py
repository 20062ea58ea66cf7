"""Volumes for real: API -> Redis -> a Celery worker -> libvirtd in the lab.

A qcow2 volume is created, converted to raw with progress, grown and wiped; a file is uploaded
through the API and downloaded back byte for byte; an upload cancelled midway leaves no volume.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from hosts.models import Host
from kvmweb import virt
from kvmweb.errors import Invalid
from kvmweb.operations import services as operation_services
from kvmweb.operations.models import Operation
from kvmweb.virt import volumes
from storage import uploads
from storage.models import StoragePool, Volume
from storage.volumes import new_volume_target
from tests.bodies import Arriving
from tests.factories import make_user
from tests.lab.guests import POOL, data_volume_name, ensure_guest, remove_guest, unique_guest_name
from tests.lab.hosts import LabHost
from tests.lab.virsh import virsh
from tests.runs import actor_of, run
from tests.stack import wait_until

pytestmark = pytest.mark.integration
MIB = 1024**2


@pytest.fixture
def prefix(lab_host: LabHost) -> Iterator[str]:
    """A unique name prefix; every volume of the lab pool starting with it is removed afterwards."""
    name = f"kvw-vols-{uuid.uuid4().hex[:8]}"
    yield name
    for volume in volumes.host_volumes(lab_host.target):
        if volume.name.startswith(name) and volume.path:
            volumes.delete_volume(lab_host.target, volume.path)


@pytest.fixture
def setup(worker, lab_host, transactional_db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ada = make_user("ada", admin=True)
    host = Host.objects.create(name="lab", uri=lab_host.uri, state=Host.State.CONNECTED)
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    pool = StoragePool.objects.get(host=host, name=POOL)
    return {"api": api, "host": host, "lab": lab_host, "log": worker, "pool": pool, "ada": ada}


def finish(setup: dict[str, Any], response: Any, timeout: float = 120) -> Operation:
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]
    wait_until(
        lambda: Operation.objects.get(pk=op_id).status in ("succeeded", "failed", "cancelled"),
        timeout=timeout,
        what=f"operation {op_id}",
        log=setup["log"],
    )
    return Operation.objects.get(pk=op_id)


def post(setup: dict[str, Any], url: str, body: dict[str, Any]) -> Operation:
    return finish(setup, setup["api"].post(url, body, content_type="application/json"))


def vol_xml(setup: dict[str, Any], name: str) -> str:
    return virsh(setup["lab"].uri, "vol-dumpxml", "--pool", POOL, name, timeout=30)


def test_create_convert_resize_and_wipe(setup, prefix) -> None:  # type: ignore[no-untyped-def]
    name = f"{prefix}-a.qcow2"
    body = {"pool": setup["pool"].pk, "name": name, "size": 16, "unit": "MiB", "format": "qcow2"}
    op = post(setup, "/api/v1/volumes/", body)
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert "<format type='qcow2'/>" in vol_xml(setup, name) and "<compat>1.1</compat>" in vol_xml(setup, name)
    source = Volume.objects.get(pool=setup["pool"], name=name)
    assert source.capacity == 16 * MIB and source.allocation < source.capacity

    same = setup["api"].post(
        f"/api/v1/volumes/{source.pk}/actions/convert/", {"format": "qcow2"}, content_type="application/json"
    )
    assert same.status_code == 400 and "already qcow2" in same.json()["error"]["message"]

    copy = f"{prefix}-b.raw"
    op = post(setup, f"/api/v1/volumes/{source.pk}/actions/convert/", {"name": copy, "format": "raw"})
    assert op.status == "succeeded", (op.error, op.error_detail)
    messages = [line["message"] for line in op.log]
    assert any(m.startswith(f"Converting {name} (qcow2) to raw") for m in messages), messages
    assert any(m.startswith(f"Converting {name} (qcow2) to raw: ") and " of " in m for m in messages), messages
    assert "never removes it" in op.result["note"]
    assert "<format type='raw'/>" in vol_xml(setup, copy)
    assert volumes.volume_by_path(setup["lab"].target, source.path) is not None  # the source stays
    converted = Volume.objects.get(pool=setup["pool"], name=copy)
    assert (converted.format, converted.capacity) == ("raw", 16 * MIB)

    op = post(setup, f"/api/v1/volumes/{converted.pk}/actions/resize/", {"size": 32, "unit": "MiB"})
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert "<capacity unit='bytes'>33554432</capacity>" in vol_xml(setup, copy)
    assert Volume.objects.get(pk=converted.pk).capacity == 32 * MIB

    path = converted.path
    with open(path, "r+b") as handle:  # the lab's pool is a local directory: write a marker to wipe
        handle.write(b"kvmweb-marker" * 100)
    op = post(setup, f"/api/v1/volumes/{converted.pk}/actions/wipe/", {"confirm": copy})
    assert op.status == "succeeded", (op.error, op.error_detail)
    with open(path, "rb") as handle:
        assert b"kvmweb-marker" not in handle.read(MIB)

    op = post(setup, f"/api/v1/volumes/{converted.pk}/actions/delete/", {"confirm": copy})
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert volumes.volume_by_path(setup["lab"].target, path) is None
    assert not Volume.objects.filter(pk=converted.pk).exists()


def test_upload_then_download_is_byte_identical(setup, prefix) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(2 * MIB + 4096)
    name = f"{prefix}-up.img"
    response = setup["api"].post(
        f"/api/v1/pools/{setup['pool'].pk}/upload/?name={name}&image_format=raw",
        data,
        content_type="application/octet-stream",
    )
    op = finish(setup, response)
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert op.progress == 100 and any(" of " in line["message"] for line in op.log)
    assert list(uploads.upload_dir().glob("*.part")) == []
    volume = Volume.objects.get(pool=setup["pool"], name=name)
    download = setup["api"].get(f"/api/v1/volumes/{volume.pk}/download/")
    assert download.status_code == 200 and download.streaming
    got = b"".join(download.streaming_content)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


def test_cancelling_an_upload_midway_leaves_no_volume(setup, prefix, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Run in this process, not the worker, so the cancel lands between two chunks.
    monkeypatch.setattr(operation_services, "_enqueue", lambda op_id, kind, queue: None)
    monkeypatch.setattr(uploads, "UPLOAD_CHUNK", 256 * 1024)
    monkeypatch.setattr(uploads, "CHECK_INTERVAL", 0)  # look at the operation before every chunk
    name = f"{prefix}-cancel.img"
    actor = actor_of(setup["ada"])
    op = uploads.upload_receive(
        actor=actor, pool=setup["pool"], name=name, fmt="raw", size=2 * MIB, body=io.BytesIO(os.urandom(2 * MIB))
    )
    real, checks = uploads._still_wanted, []

    def cancel_on_second_chunk(current: Operation) -> bool:
        checks.append(current.pk)
        if len(checks) == 2:
            uploads.upload_cancel(actor=actor, op=Operation.objects.get(pk=current.pk))
        return real(current)

    monkeypatch.setattr(uploads, "_still_wanted", cancel_on_second_chunk)
    ended = run(op)
    assert ended.status == "cancelled" and len(checks) == 2
    assert volumes.volume_in_pool(setup["lab"].target, POOL, name) is None
    assert name not in virsh(setup["lab"].uri, "vol-list", POOL, timeout=30)
    assert list(uploads.upload_dir().glob("*.part")) == []


def _upload_op(name: str) -> Operation | None:
    return Operation.objects.filter(kind=uploads.KIND, target_label__endswith=f"/{name}").first()


def _wait_for_the_host_to_receive(setup: dict[str, Any], name: str) -> Operation:
    """Until the host has written the first MiB of `name` (sent by the worker while the body still arrives)."""

    def written() -> int:
        record = volumes.volume_in_pool(setup["lab"].target, POOL, name)
        return setup["lab"].host_path(record.path).stat().st_blocks * 512 if record and record.path else 0

    wait_until(lambda: written() >= MIB, timeout=60, what=f"the host to receive {name}", log=setup["log"])
    op = _upload_op(name)
    assert op is not None and op.status == "running"
    return op


def _wait_for_no_volume(setup: dict[str, Any], name: str) -> None:
    wait_until(
        lambda: volumes.volume_in_pool(setup["lab"].target, POOL, name) is None,
        timeout=30,
        what=f"the partial volume {name} to be deleted",
        log=setup["log"],
    )


def test_the_worker_streams_an_upload_while_it_still_arrives(setup, prefix) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(8 * MIB + 5)
    name = f"{prefix}-overlap.img"
    during: list[tuple[int, int]] = []

    def once_the_host_receives(served: int) -> None:
        if served == 3:
            op = _wait_for_the_host_to_receive(setup, name)
            during.append((op.pk, served))

    body = Arriving(data, MIB, after=once_the_host_receives)
    op = uploads.upload_receive(
        actor=actor_of(setup["ada"]), pool=setup["pool"], name=name, fmt="raw", size=len(data), body=body
    )
    assert during == [(op.pk, 3)]  # 3 of 9 chunks had arrived when the host got its first bytes
    wait_until(lambda: Operation.objects.get(pk=op.pk).status not in Operation.ACTIVE, timeout=60, what="upload")
    op.refresh_from_db()
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert list(uploads.upload_dir().glob("*.part")) == []
    volume = Volume.objects.get(pool=setup["pool"], name=name)
    got = b"".join(volumes.download_volume(setup["lab"].target, volume.path))
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_client_that_goes_away_midway_fails_the_upload_and_the_worker_removes_its_volume(setup, prefix) -> None:  # type: ignore[no-untyped-def]
    name = f"{prefix}-gone.img"

    def once_the_host_receives(served: int) -> None:
        if served == 3:
            _wait_for_the_host_to_receive(setup, name)

    body = Arriving(os.urandom(3 * MIB), MIB, after=once_the_host_receives)  # then b"": the client is gone
    with pytest.raises(Invalid, match="ended after 3145728 of the 8388608 bytes"):
        uploads.upload_receive(
            actor=actor_of(setup["ada"]), pool=setup["pool"], name=name, fmt="raw", size=8 * MIB, body=body
        )
    op = _upload_op(name)
    assert op is not None and op.status == "failed" and op.error.startswith("The upload ended after 3145728")
    _wait_for_no_volume(setup, name)
    assert list(uploads.upload_dir().glob("*.part")) == []


def test_cancelling_an_upload_still_arriving_stops_both_sides(setup, prefix, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(uploads, "CHECK_INTERVAL", 0)  # this process receives: look before every chunk
    name = f"{prefix}-stop.img"

    def cancel_once_the_host_receives(served: int) -> None:
        if served == 3:
            op = _wait_for_the_host_to_receive(setup, name)
            assert setup["api"].post(f"/api/v1/volumes/uploads/{op.pk}/cancel/").status_code == 200

    body = Arriving(os.urandom(64 * MIB), MIB, after=cancel_once_the_host_receives)
    with pytest.raises(uploads.UploadCancelled, match="Cancelled by ada"):
        uploads.upload_receive(
            actor=actor_of(setup["ada"]), pool=setup["pool"], name=name, fmt="raw", size=64 * MIB, body=body
        )
    assert body.served == 4
    op = _upload_op(name)
    assert op is not None and op.status == "cancelled"
    _wait_for_no_volume(setup, name)
    assert list(uploads.upload_dir().glob("*.part")) == []


def test_a_spool_that_stops_growing_is_abandoned_and_its_volume_removed(setup, prefix, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The web process was killed mid-body: nobody ends the operation, the file just stops growing.
    monkeypatch.setattr(operation_services, "_enqueue", lambda op_id, kind, queue: None)
    monkeypatch.setattr(uploads, "STALL_SECONDS", 0.3)
    name = f"{prefix}-stalled.img"
    spool = uploads.upload_dir() / f"{uuid.uuid4().hex}.part"
    spool.write_bytes(os.urandom(2 * MIB))
    params = {"pool": setup["pool"].pk, "name": name, "format": "raw", "size": 8 * MIB, "file": spool.name}
    op = operation_services.operation_start(
        kind=uploads.KIND,
        target=new_volume_target(setup["pool"], name),
        actor=actor_of(setup["ada"]),
        params=params,
    )
    ended = run(op)
    assert ended.status == "failed" and ended.error.startswith("No data arrived for 0.3 s after 2 MiB of 8 MiB")
    assert volumes.volume_in_pool(setup["lab"].target, POOL, name) is None
    assert not spool.exists()


def test_a_running_vms_disk_grows_through_the_vm_and_cannot_be_deleted(setup, lab_host) -> None:  # type: ignore[no-untyped-def]
    name = unique_guest_name("volsvc")
    try:
        guest = ensure_guest(lab_host, name, data_disk=True, start=True, wait=True, timeout=90)
        host_reconcile(host=setup["host"], inventory=virt.get_inventory(setup["host"].virt_target()))
        volume = Volume.objects.get(pool=setup["pool"], name=data_volume_name(name))
        wanted = volume.capacity + 8 * MIB

        refused = setup["api"].post(
            f"/api/v1/volumes/{volume.pk}/actions/delete/", {"confirm": volume.name}, content_type="application/json"
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["message"] == f"Cannot delete {volume.name}: it is used by VM {name}."

        op = post(setup, f"/api/v1/volumes/{volume.pk}/actions/resize/", {"size": wanted // MIB, "unit": "MiB"})
        assert op.status == "succeeded", (op.error, op.error_detail)
        assert op.result["through"] == f"VM {name}"
        # QEMU itself reports the new size: the running guest was told, not just the file.
        blk = virsh(lab_host.uri, "domblkinfo", guest.uuid, "vda", timeout=30)
        assert f"Capacity: {wanted}" in " ".join(blk.split()), blk
        assert Volume.objects.get(pk=volume.pk).capacity == wanted
    finally:
        remove_guest(lab_host, name)
