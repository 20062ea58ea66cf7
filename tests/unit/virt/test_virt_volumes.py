"""Storage volumes on libvirt's test driver.

test:///default has one active directory pool, ``default-pool`` (100 GiB, at /default-pool). Its
driver creates, copies (createXMLFrom, instantly and only within one pool), lists, refreshes and
deletes volumes, but has no preallocation flags, no resize and no upload/download streams: those,
real copies with progress and copies between pools are proved on the real lab in
tests/integration/test_volumes_lab.py, and here only their refusals and the clean-up after them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from kvmweb import virt
from kvmweb.virt import volumes
from kvmweb.virt.xml import VolumeSpec
from tests.unit.virt.conftest import MakeNode
from tests.unit.virt.nodefile import NodePool, NodeVolume

POOL = "default-pool"
POOL_PATH = "/default-pool"
MIB = 1024**2
GIB = 1024**3

NewName = Callable[[str], str]


@pytest.fixture
def new_name(target: virt.HostTarget) -> Iterator[NewName]:
    """Unique volume names in default-pool; whatever exists under them is deleted after the test."""
    names: list[str] = []

    def make(suffix: str = "") -> str:
        names.append(f"unit-{uuid.uuid4().hex[:10]}{suffix}")
        return names[-1]

    yield make
    for name in names:
        volumes.delete_volume(target, f"{POOL_PATH}/{name}")


@pytest.fixture
def pool_uuid(target: virt.HostTarget) -> str:
    [pool] = [pool for pool in virt.get_inventory(target).pools if pool.name == POOL]
    return pool.uuid


def _create(target: virt.HostTarget, name: str, capacity: int = 64 * MIB, **fields: object) -> virt.VolumeRecord:
    spec = VolumeSpec(name=name, capacity_bytes=capacity, **fields)  # type: ignore[arg-type]
    return volumes.create_volume(target, POOL, spec)


# Creating


def test_thin_volume_allocates_nothing_and_full_one_everything(
    target: virt.HostTarget, new_name: NewName, pool_uuid: str
) -> None:
    thin_name, full_name = new_name(".qcow2"), new_name(".img")

    thin = _create(target, thin_name, 2 * GIB)
    full = _create(target, full_name, 64 * MIB, format="raw", allocation="full")

    assert thin == virt.VolumeRecord(
        pool_uuid=pool_uuid,
        name=thin_name,
        key=f"{POOL_PATH}/{thin_name}",
        path=f"{POOL_PATH}/{thin_name}",
        type="file",
        format="qcow2",
        capacity=2 * GIB,
        allocation=0,
        backing_path=None,
    )
    assert (full.format, full.capacity, full.allocation) == ("raw", 64 * MIB, 64 * MIB)
    # What the host reports later, not just what the call returned.
    assert volumes.volume_by_path(target, f"{POOL_PATH}/{thin_name}") == thin
    assert volumes.volume_by_path(target, f"{POOL_PATH}/{full_name}") == full


@pytest.mark.parametrize("allocation", ["metadata", "full"])
def test_preallocated_qcow2_is_asked_of_the_host(target: virt.HostTarget, new_name: NewName, allocation: str) -> None:
    name = new_name()

    # libvirt preallocates a qcow2 (metadata, or falloc for full) only with this flag. The test
    # driver accepts no create flags at all, and its refusal names the one it was sent.
    with pytest.raises(virt.InvalidArgument) as caught:
        _create(target, name, allocation=allocation)

    assert "unsupported flags (0x1)" in caught.value.raw  # VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA
    assert volumes.volume_by_path(target, f"{POOL_PATH}/{name}") is None


def test_taken_name_is_refused_with_a_plain_message(target: virt.HostTarget, new_name: NewName) -> None:
    name = new_name()
    first = _create(target, name)

    with pytest.raises(virt.AlreadyExists) as caught:
        _create(target, name, 2 * GIB, format="raw")

    assert caught.value.message == f"Storage pool default-pool already has a volume named {name}."
    assert volumes.volume_by_path(target, f"{POOL_PATH}/{name}") == first


def test_full_volume_larger_than_the_free_space_is_refused_before_it_is_made(
    target: virt.HostTarget, new_name: NewName
) -> None:
    name = new_name()

    with pytest.raises(virt.InvalidArgument) as caught:
        _create(target, name, 200 * GIB, format="raw", allocation="full")

    assert caught.value.message.startswith("Not enough space in pool default-pool: needs 200 GiB, has ")
    assert caught.value.message.endswith(" GiB.")
    assert volumes.volume_by_path(target, f"{POOL_PATH}/{name}") is None


def test_thin_volume_larger_than_the_free_space_is_fine(target: virt.HostTarget, new_name: NewName) -> None:
    assert _create(target, new_name(), 200 * GIB).capacity == 200 * GIB


def test_unknown_pool_is_not_found(target: virt.HostTarget) -> None:
    with pytest.raises(virt.NotFound):
        volumes.create_volume(target, "no-such-pool", VolumeSpec(name="orphan.qcow2", capacity_bytes=GIB))


# Cloning


def test_clone_is_a_copy_of_the_same_size_with_a_final_progress_report(
    target: virt.HostTarget, new_name: NewName
) -> None:
    source = _create(target, new_name(".img"), 512 * MIB, format="raw", allocation="full")
    clone_name = new_name(".img")
    reports: list[tuple[int, int]] = []

    clone = volumes.clone_volume(
        target, POOL, f"{POOL_PATH}/{source.name}", clone_name, progress=lambda *report: reports.append(report)
    )

    assert (clone.name, clone.format, clone.capacity) == (clone_name, "raw", 512 * MIB)
    assert clone.path == f"{POOL_PATH}/{clone_name}"
    # The test driver copies instantly, so only the closing report comes: all of the source's data.
    assert reports[-1] == (512 * MIB, 512 * MIB)
    assert volumes.volume_by_path(target, f"{POOL_PATH}/{clone_name}") == clone


def test_clone_can_change_the_format(target: virt.HostTarget, new_name: NewName) -> None:
    source = _create(target, new_name(".img"), format="raw")

    clone = volumes.clone_volume(target, POOL, f"{POOL_PATH}/{source.name}", new_name(".qcow2"), format="qcow2")

    assert (clone.format, clone.capacity) == ("qcow2", 64 * MIB)


def test_clone_that_cannot_be_grown_is_deleted(target: virt.HostTarget, new_name: NewName) -> None:
    source = _create(target, new_name(".img"), format="raw")
    clone_name = new_name(".img")

    # The test driver cannot resize, so growing the finished copy fails.
    with pytest.raises(virt.Unsupported):
        volumes.clone_volume(target, POOL, f"{POOL_PATH}/{source.name}", clone_name, capacity_bytes=GIB)

    assert volumes.volume_by_path(target, f"{POOL_PATH}/{clone_name}") is None
    assert volumes.volume_by_path(target, f"{POOL_PATH}/{source.name}") == source


def test_clone_whose_progress_callback_raises_is_deleted(target: virt.HostTarget, new_name: NewName) -> None:
    source = _create(target, new_name(".img"), format="raw")
    clone_name = new_name(".img")

    def cancel(_done: int, _total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        volumes.clone_volume(target, POOL, f"{POOL_PATH}/{source.name}", clone_name, progress=cancel)

    assert volumes.volume_by_path(target, f"{POOL_PATH}/{clone_name}") is None


def test_clone_refuses_a_smaller_size_a_taken_name_and_a_missing_source(
    target: virt.HostTarget, new_name: NewName
) -> None:
    source = _create(target, new_name(".img"), format="raw")
    source_path = f"{POOL_PATH}/{source.name}"

    with pytest.raises(virt.InvalidArgument) as smaller:
        volumes.clone_volume(target, POOL, source_path, new_name(), capacity_bytes=32 * MIB)
    with pytest.raises(virt.AlreadyExists):
        volumes.clone_volume(target, POOL, source_path, source.name)
    with pytest.raises(virt.NotFound) as missing:
        volumes.clone_volume(target, POOL, f"{POOL_PATH}/missing.img", new_name())
    with pytest.raises(virt.InvalidArgument) as bad_format:
        volumes.clone_volume(target, POOL, source_path, new_name(), format="vmdk")

    assert smaller.value.message == "A copy cannot be smaller than its source (64 MiB); got 32 MiB."
    assert missing.value.message == "No storage pool of the host has a volume at /default-pool/missing.img."
    assert bad_format.value.message == "Volume format must be one of qcow2, raw; got 'vmdk'."


# Linked volumes


def test_linked_volume_is_a_qcow2_overlay_on_its_backing_volume(target: virt.HostTarget, new_name: NewName) -> None:
    base = _create(target, new_name(".img"), 256 * MIB, format="raw")
    overlay_name = new_name(".qcow2")

    overlay = volumes.create_linked_volume(target, POOL, f"{POOL_PATH}/{base.name}", overlay_name)

    assert (overlay.format, overlay.capacity, overlay.backing_path) == ("qcow2", 256 * MIB, base.path)
    assert volumes.volume_by_path(target, f"{POOL_PATH}/{overlay_name}") == overlay


def test_linked_volume_may_be_larger_than_its_backing_but_not_smaller(
    target: virt.HostTarget, new_name: NewName
) -> None:
    base = _create(target, new_name(".qcow2"), 256 * MIB)
    base_path = f"{POOL_PATH}/{base.name}"

    larger = volumes.create_linked_volume(target, POOL, base_path, new_name(), capacity_bytes=GIB)
    with pytest.raises(virt.InvalidArgument) as smaller:
        volumes.create_linked_volume(target, POOL, base_path, new_name(), capacity_bytes=128 * MIB)

    assert (larger.capacity, larger.backing_path) == (GIB, base.path)
    assert smaller.value.message == "A linked volume cannot be smaller than its source (256 MiB); got 128 MiB."


# Uploading, downloading, resizing


def test_upload_the_host_cannot_take_leaves_no_volume(target: virt.HostTarget, new_name: NewName) -> None:
    name = new_name(".iso")

    with pytest.raises(virt.Unsupported):
        volumes.upload_volume(target, POOL, name, [b"seed"], size=4)

    assert volumes.volume_by_path(target, f"{POOL_PATH}/{name}") is None


@pytest.mark.parametrize(
    ("size", "fmt", "message"),
    [
        (0, "raw", "An upload needs a size of at least 1 byte; got 0."),
        (-5, "raw", "An upload needs a size of at least 1 byte; got -5."),
        (65 * 1024**4, "raw", "Capacity must be from 1 MiB to 64 TiB; got 65 TiB."),
        (4, "iso", "Upload format must be one of qcow2, raw; got 'iso'."),
    ],
)
def test_upload_with_a_bad_size_or_format_is_refused(
    target: virt.HostTarget, new_name: NewName, size: int, fmt: str, message: str
) -> None:
    name = new_name()

    with pytest.raises(virt.InvalidArgument) as caught:
        volumes.upload_volume(target, POOL, name, [b"seed"], size=size, format=fmt)

    assert caught.value.message == message
    assert volumes.volume_by_path(target, f"{POOL_PATH}/{name}") is None


def test_download_needs_streams_the_test_driver_lacks(target: virt.HostTarget, new_name: NewName) -> None:
    volume = _create(target, new_name(), format="raw")

    with pytest.raises(virt.Unsupported):
        next(volumes.download_volume(target, f"{POOL_PATH}/{volume.name}"))


def test_shrinking_is_refused_before_the_host_is_asked(target: virt.HostTarget, new_name: NewName) -> None:
    volume = _create(target, new_name(), GIB)
    path = f"{POOL_PATH}/{volume.name}"

    with pytest.raises(virt.InvalidArgument) as caught:
        volumes.resize_volume(target, path, 512 * MIB)
    volumes.resize_volume(target, path, GIB)  # the same size asks nothing of the host

    assert caught.value.message == (
        f"The volume {path} is 1 GiB; it can only grow, and 512 MiB would shrink it and cut off its end."
    )
    assert volumes.volume_by_path(target, path) == volume


def test_growing_is_left_to_the_host(target: virt.HostTarget, new_name: NewName) -> None:
    volume = _create(target, new_name(), GIB)

    with pytest.raises(virt.Unsupported):  # the test driver has no resize; the lab test grows for real
        volumes.resize_volume(target, f"{POOL_PATH}/{volume.name}", 2 * GIB)


# Deleting, finding, listing


def test_delete_removes_the_volume_once(target: virt.HostTarget, new_name: NewName) -> None:
    path = _create(target, new_name()).path
    assert path is not None

    assert volumes.delete_volume(target, path) is True
    assert volumes.volume_by_path(target, path) is None
    assert volumes.delete_volume(target, path) is False


def test_volume_by_path_is_none_for_an_unknown_path(target: virt.HostTarget) -> None:
    assert volumes.volume_by_path(target, "/default-pool/never-made") is None
    assert volumes.volume_by_path(target, "/etc/passwd") is None


def test_host_volumes_lists_every_active_pool_with_backing_files(make_node: MakeNode) -> None:
    base = NodeVolume(name="base.img", format="raw", capacity=GIB, allocation=GIB)
    overlay = NodeVolume(name="vm.qcow2", format="qcow2", capacity=GIB, allocation=MIB, backing="/srv/a/base.img")
    first = NodePool(name="a", path="/srv/a", uuid="aaaaaaaa-0000-4000-8000-00000000000a", volumes=(overlay, base))
    second = NodePool(name="b", path="/srv/b", uuid="bbbbbbbb-0000-4000-8000-00000000000b")
    node = make_node(pools=(second, first))
    volumes.create_volume(node, "b", VolumeSpec(name="data.qcow2", capacity_bytes=GIB))

    found = volumes.host_volumes(node)

    assert [(record.pool_uuid, record.name, record.backing_path) for record in found] == [
        (first.uuid, "base.img", None),
        (first.uuid, "vm.qcow2", "/srv/a/base.img"),
        (second.uuid, "data.qcow2", None),
    ]


def test_refresh_pool_rescans_and_refuses_an_unknown_pool(target: virt.HostTarget, new_name: NewName) -> None:
    volume = _create(target, new_name())

    volumes.refresh_pool(target, POOL)
    with pytest.raises(virt.NotFound):
        volumes.refresh_pool(target, "no-such-pool")

    assert volumes.volume_by_path(target, f"{POOL_PATH}/{volume.name}") == volume


LibvirtError = volumes.libvirt.libvirtError  # the class libvirt raises, as the adapter sees it


class _BusyHostPool:
    """A pool whose qemu-img trips over its LUKS timing `fails` times: a fault the lab cannot cause on demand."""

    def __init__(self, fails: int, message: str = "Unable to get accurate CPU usage") -> None:
        self.fails, self.message, self.calls = fails, message, 0

    def createXML(self, xml: str, flags: int) -> str:
        self.calls += 1
        if self.calls <= self.fails:
            raise LibvirtError(f"internal error: qemu-img: {self.message}")
        return "volume"


def test_a_luks_timing_refusal_is_measured_again():
    pool = _BusyHostPool(fails=2)
    assert volumes.create_xml_retrying(pool, "<volume/>", 0) == "volume"
    assert pool.calls == 3


def test_other_create_failures_and_a_persistent_timing_refusal_are_raised():
    persistent = _BusyHostPool(fails=volumes.LUKS_ATTEMPTS)
    for pool in (_BusyHostPool(fails=1, message="No space left on device"), persistent):
        with pytest.raises(LibvirtError):
            volumes.create_xml_retrying(pool, "<volume/>", 0)
    assert pool.calls == volumes.LUKS_ATTEMPTS
