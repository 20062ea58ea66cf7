"""The compressed copy's parts that need no lab: reading what ``qemu-img convert -p`` prints (fed in
pieces, and from a real qemu-img), and the clean-up when the copy fails in its first phase, which the
test driver does, having no download streams. The whole copy runs against the real lab in
tests/integration/test_volume_compress_lab.py."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from kvmweb import virt
from kvmweb.virt import volume_compress, volumes
from kvmweb.virt.volume_compress import QemuImgOutput
from kvmweb.virt.xml import VolumeSpec

POOL = "default-pool"
MIB = 1024**2


def test_a_progress_report_cut_between_two_reads_counts_once_it_is_whole() -> None:
    output = QemuImgOutput()

    first = output.feed(b"    (0.00/100%)\r    (1.0")
    second = output.feed(b"5/100%)\r    (2.10/100%)\r    (3")
    third = output.feed(b"")

    assert (first, second, third) == (0.0, 2.1, None)
    assert output.error == ""


def test_what_is_not_progress_is_kept_as_the_error() -> None:
    output = QemuImgOutput()

    output.feed(b"    (0.00/100%)\rqemu-img: error while writing at byte 0: No space left on device\n")
    output.feed(b"qemu-img: Could not close the new file")
    output.close()

    assert output.error == (
        "qemu-img: error while writing at byte 0: No space left on device qemu-img: Could not close the new file"
    )


def test_an_error_cut_inside_a_character_reads_whole() -> None:
    output = QemuImgOutput()
    message = "qemu-img: Could not open 'données.img': No such file or directory".encode()
    cut = message.index("é".encode()) + 1

    output.feed(message[:cut])
    output.feed(message[cut:])
    output.close()

    assert output.error == "qemu-img: Could not open 'données.img': No such file or directory"


def test_the_output_of_a_real_qemu_img_reads_up_to_100_percent(tmp_path: Path) -> None:
    source = tmp_path / "source.raw"
    source.write_bytes(b"kvmweb " * MIB)
    args = ["qemu-img", "convert", "-p", "-c", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1"]
    done = subprocess.run([*args, str(source), str(tmp_path / "out.qcow2")], capture_output=True, check=True)

    output = QemuImgOutput()
    percent = output.feed(done.stdout)
    output.close()

    assert percent == 100.0 and output.error == ""


def test_a_copy_that_fails_midway_leaves_no_temporary_file_and_no_volume(
    target: virt.HostTarget, tmp_path: Path
) -> None:
    name = f"unit-{uuid.uuid4().hex[:10]}"
    source = volumes.create_volume(target, POOL, VolumeSpec(name=f"{name}.raw", capacity_bytes=16 * MIB, format="raw"))
    reports: list[tuple[int, str]] = []
    try:
        with pytest.raises(virt.Unsupported, match="virStorageVolDownload"):
            volume_compress.compressed_copy(
                target,
                POOL,
                source.path or "",
                f"{name}.qcow2",
                work_dir=tmp_path,
                progress=lambda percent, message: reports.append((percent, message)),
                timeout=60,
            )
        assert list(tmp_path.iterdir()) == []
        assert volumes.volume_in_pool(target, POOL, f"{name}.qcow2") is None
        assert reports == []
    finally:
        volumes.delete_volume(target, source.path or "")
