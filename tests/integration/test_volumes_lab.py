"""Storage volumes for real: the adapter against the lab's libvirtd and its ``kvmweb-lab`` dir pool.

What the test driver cannot do is proved here: preallocation, real copies (with progress, between
pools and formats), resizing, upload and download streams, and the clean-up after each failure.
Every volume gets a unique name and is removed afterwards; the second pool is a transient one of
this module's own.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from kvmweb import virt
from kvmweb.virt import volumes
from kvmweb.virt.xml import VolumeSpec, parse_xml
from tests.lab.errors import LabError
from tests.lab.hosts import LabHost
from tests.lab.virsh import virsh

pytestmark = pytest.mark.integration

POOL = "kvmweb-lab"
POOL_PATH = "/var/lib/libvirt/images/kvmweb-lab"
MIB = 1024**2
GIB = 1024**3

NewName = Callable[[str], str]
Reports = list[tuple[int, int]]


@pytest.fixture(scope="module")
def target(libvirt_host: str) -> Iterator[virt.HostTarget]:
    yield virt.HostTarget(libvirt_host)
    virt.close_all()


@pytest.fixture
def new_name(libvirt_host: str) -> Iterator[NewName]:
    """Unique volume names; whatever exists under them in the lab pool is deleted after the test."""
    names: list[str] = []

    def make(suffix: str = "") -> str:
        names.append(f"it-vol-{uuid.uuid4().hex[:10]}{suffix}")
        return names[-1]

    yield make
    for name in names:
        with suppress(LabError):  # never made, or already deleted by the test
            virsh(libvirt_host, "vol-delete", name, "--pool", POOL, timeout=30)


@pytest.fixture(scope="module")
def other_pool(lab_host: LabHost) -> Iterator[tuple[str, str]]:
    """A second, transient dir pool ``(name, path)``, destroyed with its volumes after the module."""
    name = f"it-vol-p{os.getpid()}"
    path = f"/var/lib/libvirt/images/{name}"
    directory = lab_host.host_path(path)
    directory.mkdir(mode=0o755, exist_ok=True)
    virsh(lab_host.uri, "pool-create-as", name, "dir", "--target", path, timeout=30)
    yield name, path
    for line in virsh(lab_host.uri, "vol-list", name, timeout=30).splitlines():
        if line.split():
            virsh(lab_host.uri, "vol-delete", line.split()[0], "--pool", name, timeout=30)
    virsh(lab_host.uri, "pool-destroy", name, timeout=30)
    directory.rmdir()


@pytest.fixture
def fast_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """Report a clone's progress every 10 ms, so a copy of a few hundred MiB reports several times."""
    monkeypatch.setattr(volumes, "PROGRESS_INTERVAL", 0.01)


def _create(target: virt.HostTarget, name: str, capacity: int, **fields: object) -> virt.VolumeRecord:
    spec = VolumeSpec(name=name, capacity_bytes=capacity, **fields)  # type: ignore[arg-type]
    return volumes.create_volume(target, POOL, spec)


def _chunks(data: bytes, size: int = MIB) -> Iterator[bytes]:
    """The data in pieces, handed out lazily as an upload of a large file would be."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _upload(target: virt.HostTarget, name: str, data: bytes, **options: object) -> virt.VolumeRecord:
    return volumes.upload_volume(target, POOL, name, _chunks(data), size=len(data), **options)  # type: ignore[arg-type]


def _download(target: virt.HostTarget, path: str | None) -> bytes:
    assert path is not None
    return b"".join(volumes.download_volume(target, path))


def _digest(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _gone(libvirt_host: str, name: str, pool: str = POOL) -> bool:
    listed = [line.split()[0] for line in virsh(libvirt_host, "vol-list", pool).splitlines() if line.split()]
    return name not in listed and not Path(f"{POOL_PATH}/{name}").exists()


def _disk_usage(lab_host: LabHost, path: str | None) -> int:
    assert path is not None
    return lab_host.host_path(path).stat().st_blocks * 512


# Creating


def test_thin_volume_allocates_nothing_and_full_one_every_byte(
    target: virt.HostTarget, new_name: NewName, lab_host: LabHost
) -> None:
    thin = _create(target, new_name(".img"), 256 * MIB, format="raw")
    full_raw = _create(target, new_name(".img"), 256 * MIB, format="raw", allocation="full")
    full_qcow2 = _create(target, new_name(".qcow2"), 256 * MIB, allocation="full")

    assert (thin.allocation, _disk_usage(lab_host, thin.path)) == (0, 0)
    for full in (full_raw, full_qcow2):
        assert full.capacity == 256 * MIB
        assert full.allocation is not None and full.allocation >= 256 * MIB
        assert _disk_usage(lab_host, full.path) >= 256 * MIB


def test_metadata_preallocation_writes_the_qcow2_tables_only(target: virt.HostTarget, new_name: NewName) -> None:
    thin = _create(target, new_name(".qcow2"), 4 * GIB)
    metadata = _create(target, new_name(".qcow2"), 4 * GIB, allocation="metadata")

    assert thin.allocation is not None and metadata.allocation is not None
    # 4 GiB of 64 KiB clusters need 512 KiB of L2 tables, written up front; the data is not.
    assert metadata.allocation >= thin.allocation + 512 * 1024
    assert metadata.allocation < 16 * MIB


def test_full_volume_larger_than_the_pool_is_refused(target: virt.HostTarget, new_name: NewName) -> None:
    name = new_name(".img")

    with pytest.raises(virt.InvalidArgument) as caught:
        _create(target, name, 64 * 1024**4, format="raw", allocation="full")

    assert caught.value.message.startswith("Not enough space in pool kvmweb-lab: needs 64 TiB, has ")
    assert volumes.volume_by_path(target, f"{POOL_PATH}/{name}") is None


def test_taken_name_is_refused(target: virt.HostTarget, new_name: NewName) -> None:
    name = new_name(".qcow2")
    _create(target, name, 64 * MIB)

    with pytest.raises(virt.AlreadyExists) as caught:
        _create(target, name, 64 * MIB)

    assert caught.value.message == f"Storage pool kvmweb-lab already has a volume named {name}."


# Linked volumes


def test_linked_volume_is_an_overlay_on_its_backing_volume(
    target: virt.HostTarget, new_name: NewName, libvirt_host: str
) -> None:
    base = _create(target, new_name(".qcow2"), 256 * MIB)
    overlay_name = new_name(".qcow2")

    overlay = volumes.create_linked_volume(target, POOL, f"{POOL_PATH}/{base.name}", overlay_name, capacity_bytes=GIB)

    assert (overlay.format, overlay.capacity, overlay.backing_path) == ("qcow2", GIB, base.path)
    dumped = parse_xml(virsh(libvirt_host, "vol-dumpxml", overlay_name, "--pool", POOL))
    assert dumped.findtext("backingStore/path") == base.path
    backing_format = dumped.find("backingStore/format")
    assert backing_format is not None and backing_format.get("type") == "qcow2"


# Uploading and downloading


def test_upload_of_a_seed_iso_round_trips_padded_to_a_mebibyte(target: virt.HostTarget, new_name: NewName) -> None:
    data = os.urandom(300 * 1024 + 7)
    reports: Reports = []

    record = _upload(target, new_name(".iso"), data, progress=lambda *report: reports.append(report))

    assert (record.format, record.capacity) == ("raw", MIB)
    assert _download(target, record.path) == data + bytes(MIB - len(data))
    assert reports == [(min(end, len(data)), len(data)) for end in range(MIB, len(data) + MIB, MIB)]


def test_upload_streams_chunk_by_chunk_and_round_trips(target: virt.HostTarget, new_name: NewName) -> None:
    data = os.urandom(5 * MIB + 17)
    reports: Reports = []

    record = _upload(target, new_name(".img"), data, progress=lambda *report: reports.append(report))

    assert record.capacity == len(data)
    assert record.allocation is not None and record.allocation >= len(data)  # whole 4 KiB blocks
    assert _download(target, record.path) == data
    assert [sent for sent, _size in reports] == [MIB, 2 * MIB, 3 * MIB, 4 * MIB, 5 * MIB, len(data)]


def test_upload_of_a_qcow2_image_keeps_it_and_its_virtual_size(target: virt.HostTarget, new_name: NewName) -> None:
    image = _download(target, _create(target, new_name(".qcow2"), 3 * GIB).path)

    record = _upload(target, new_name(".qcow2"), image, format="qcow2")

    assert (record.format, record.capacity, record.backing_path) == ("qcow2", 3 * GIB, None)


@pytest.mark.parametrize(
    ("content", "declared", "message"),
    [
        ("qcow2", "raw", "The uploaded data is a qcow2 image, not raw data; upload it as qcow2."),
        ("raw", "qcow2", "The uploaded data is not a qcow2 image."),
        ("overlay", "qcow2", "The uploaded qcow2 image names a backing or data file"),
    ],
)
def test_upload_that_is_not_what_it_claims_is_refused_and_deleted(
    target: virt.HostTarget, new_name: NewName, libvirt_host: str, content: str, declared: str, message: str
) -> None:
    base = _create(target, new_name(".qcow2"), 64 * MIB)
    samples = {
        "qcow2": lambda: _download(target, base.path),
        "raw": lambda: os.urandom(2 * MIB),
        "overlay": lambda: _download(
            target, volumes.create_linked_volume(target, POOL, f"{POOL_PATH}/{base.name}", new_name()).path
        ),
    }
    data = samples[content]()
    name = new_name()

    with pytest.raises(virt.InvalidArgument) as caught:
        _upload(target, name, data, format=declared)

    assert caught.value.message.startswith(message)
    assert _gone(libvirt_host, name)


def test_upload_whose_source_fails_midway_is_deleted(
    target: virt.HostTarget, new_name: NewName, libvirt_host: str
) -> None:
    name = new_name(".img")

    def broken() -> Iterator[bytes]:
        yield os.urandom(MIB)
        raise ConnectionResetError("the browser went away")

    with pytest.raises(ConnectionResetError):
        volumes.upload_volume(target, POOL, name, broken(), size=4 * MIB)

    assert _gone(libvirt_host, name)


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        (3 * MIB, "The upload ended after 3145728 of the 4194304 bytes announced."),
        (5 * MIB, "The upload is longer than the 4194304 bytes announced."),
    ],
)
def test_upload_of_another_size_than_announced_is_deleted(
    target: virt.HostTarget, new_name: NewName, libvirt_host: str, sent: int, message: str
) -> None:
    name = new_name(".img")

    with pytest.raises(virt.InvalidArgument) as caught:
        volumes.upload_volume(target, POOL, name, _chunks(os.urandom(sent)), size=4 * MIB)

    assert caught.value.message == message
    assert _gone(libvirt_host, name)


# Cloning


@pytest.fixture
def random_source(target: virt.HostTarget, new_name: NewName) -> tuple[virt.VolumeRecord, str]:
    """A raw volume of 192 MiB random bytes (no copy can skip them as zeros), and their digest."""
    data = os.urandom(192 * MIB)
    return _upload(target, new_name(".img"), data), hashlib.sha256(data).hexdigest()


@pytest.mark.usefixtures("fast_progress")
def test_clone_copies_every_byte_through_another_format_and_pool(
    target: virt.HostTarget,
    new_name: NewName,
    other_pool: tuple[str, str],
    random_source: tuple[virt.VolumeRecord, str],
) -> None:
    source, digest = random_source
    pool_name, pool_path = other_pool
    reports: Reports = []

    as_qcow2 = volumes.clone_volume(
        target,
        POOL,
        f"{POOL_PATH}/{source.name}",
        new_name(".qcow2"),
        format="qcow2",
        progress=lambda *report: reports.append(report),
    )
    back_to_raw = volumes.clone_volume(target, pool_name, f"{POOL_PATH}/{as_qcow2.name}", "copy.img", format="raw")

    assert (as_qcow2.format, as_qcow2.capacity) == ("qcow2", source.capacity)
    assert (back_to_raw.format, back_to_raw.capacity, back_to_raw.path) == (
        "raw",
        source.capacity,
        f"{pool_path}/copy.img",
    )
    assert _digest(volumes.download_volume(target, f"{pool_path}/copy.img")) == digest
    # Reports while copying, growing towards the source's allocation, and a last one at the end.
    assert len(reports) >= 2
    assert {total for _done, total in reports} == {source.allocation}
    assert [done for done, _total in reports] == sorted(done for done, _total in reports)
    assert reports[-1] == (source.allocation, source.allocation)


@pytest.mark.usefixtures("fast_progress")
def test_clone_grows_to_the_capacity_asked_for(
    target: virt.HostTarget, new_name: NewName, lab_host: LabHost, random_source: tuple[virt.VolumeRecord, str]
) -> None:
    source, digest = random_source
    assert source.capacity is not None

    grown = volumes.clone_volume(target, POOL, f"{POOL_PATH}/{source.name}", new_name(".img"), capacity_bytes=GIB)

    assert grown.capacity == GIB
    assert grown.path is not None and lab_host.host_path(grown.path).stat().st_size == GIB
    assert _digest(_head(volumes.download_volume(target, grown.path), source.capacity)) == digest


@pytest.mark.usefixtures("fast_progress")
def test_clone_cancelled_by_its_progress_callback_is_deleted(
    target: virt.HostTarget, new_name: NewName, libvirt_host: str, random_source: tuple[virt.VolumeRecord, str]
) -> None:
    source, _digest = random_source
    name = new_name(".qcow2")
    seen: list[tuple[virt.VolumeRecord, ...]] = []

    def cancel(_done: int, _total: int) -> None:
        # The host's other calls keep working meanwhile, rescanning pools included.
        seen.append(volumes.host_volumes(target))
        raise InterruptedError("cancelled by the user")

    with pytest.raises(InterruptedError):
        volumes.clone_volume(target, POOL, f"{POOL_PATH}/{source.name}", name, format="qcow2", progress=cancel)

    assert _gone(libvirt_host, name)
    assert source.path in {record.path for record in seen[0]}


def test_clone_refuses_a_source_that_is_not_a_volume(target: virt.HostTarget, new_name: NewName) -> None:
    with pytest.raises(virt.NotFound) as caught:
        volumes.clone_volume(target, POOL, "/etc/passwd", new_name())

    assert caught.value.message == "No storage pool of the host has a volume at /etc/passwd."


# Resizing, deleting, listing


def test_resize_grows_and_refuses_to_shrink(target: virt.HostTarget, new_name: NewName, lab_host: LabHost) -> None:
    volume = _create(target, new_name(".img"), 64 * MIB, format="raw")
    assert volume.path is not None

    volumes.resize_volume(target, volume.path, 128 * MIB)
    with pytest.raises(virt.InvalidArgument):
        volumes.resize_volume(target, volume.path, 96 * MIB)

    found = volumes.volume_by_path(target, volume.path)
    assert found is not None and found.capacity == 128 * MIB
    assert lab_host.host_path(volume.path).stat().st_size == 128 * MIB


def test_delete_removes_the_volume_once(target: virt.HostTarget, new_name: NewName, lab_host: LabHost) -> None:
    volume = _create(target, new_name(".img"), 4 * MIB, format="raw")
    assert volume.path is not None

    assert volumes.delete_volume(target, volume.path) is True
    assert volumes.volume_by_path(target, volume.path) is None
    assert not lab_host.host_path(volume.path).exists()
    assert volumes.delete_volume(target, volume.path) is False


def test_files_made_behind_libvirts_back_appear_after_a_rescan(
    target: virt.HostTarget, new_name: NewName, lab_host: LabHost
) -> None:
    name = new_name(".img")
    path = f"{POOL_PATH}/{name}"
    lab_host.host_path(path).write_bytes(bytes(MIB))

    before = volumes.volume_by_path(target, path)
    volumes.refresh_pool(target, POOL)
    after = volumes.volume_by_path(target, path)

    assert before is None
    assert after is not None and (after.name, after.capacity) == (name, MIB)


def test_host_volumes_finds_backing_file_users_and_unlisted_files(
    target: virt.HostTarget, new_name: NewName, lab_host: LabHost
) -> None:
    base = _create(target, new_name(".qcow2"), 64 * MIB)
    overlay = volumes.create_linked_volume(target, POOL, f"{POOL_PATH}/{base.name}", new_name(".qcow2"))
    stray = new_name(".img")
    lab_host.host_path(f"{POOL_PATH}/{stray}").write_bytes(bytes(MIB))

    found = {record.name: record for record in volumes.host_volumes(target)}

    assert found[overlay.name].backing_path == base.path
    assert found[base.name] == volumes.volume_by_path(target, f"{POOL_PATH}/{base.name}")
    assert found[stray].capacity == MIB
    assert [user.name for user in found.values() if user.backing_path == base.path] == [overlay.name]


def _head(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of a download, closing it there."""
    left = size
    for chunk in chunks:
        if left <= 0:
            break
        yield chunk[:left]
        left -= len(chunk)
