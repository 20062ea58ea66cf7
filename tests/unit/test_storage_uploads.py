"""The upload's temporary file, as the worker follows it (the rest of the upload tests are in
test_storage_volumes.py)."""

from __future__ import annotations

import io
import os

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.operations.models import Operation
from storage import uploads
from storage.models import StoragePool
from tests.factories import make_host
from tests.runs import actor_of

TEST_URI = "test:///default"
MIB = 1024**2


def test_the_worker_frees_the_temporary_file_behind_what_it_sent(ada, queued, settings, tmp_path) -> None:
    settings.VAR_DIR = tmp_path
    host = make_host("testhost", uri=TEST_URI)
    host_reconcile(host=host, inventory=virt.get_inventory(virt.HostTarget(TEST_URI)))
    pool = StoragePool.objects.get(host=host, name="default-pool")
    data = os.urandom(4 * MIB)
    op = uploads.upload_receive(
        actor=actor_of(ada), pool=pool, name="f.img", fmt="raw", size=len(data), body=io.BytesIO(data)
    )
    Operation.objects.filter(pk=op.pk).update(status=Operation.Status.RUNNING)  # as the worker claims it
    path = uploads.upload_dir() / op.params["file"]
    assert path.stat().st_blocks * 512 >= len(data)

    assert b"".join(uploads._chunks(op, path, len(data))) == data

    # Its page cache and blocks went back as they were sent: the web process writes into those pages.
    assert path.stat().st_size == len(data) and path.stat().st_blocks == 0
