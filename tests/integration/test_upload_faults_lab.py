"""A host that goes away in the middle of an upload, for real.

The shared lab's libvirtd is left alone: the host here is ``h1`` of scripts/lab/two_hosts.sh, a
private libvirtd in its own network and mount namespaces. Its libvirtd (the one in netns
``kvmweb-h1``, by its pid file) is killed while the upload streams into it, and started again
afterwards through two_hosts.sh, which brings it back on the same state.

The operation runs in this process through the real claim and runner, and the chunks it hands to
the adapter (kvmweb.virt.volumes.upload_volume, otherwise untouched) pass through the test, so that
the kill lands between two chunks of the stream, not before or after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from hosts.models import Host
from kvmweb import virt
from kvmweb.operations import services as operation_services
from kvmweb.operations.models import Operation
from kvmweb.virt import volumes
from storage import uploads
from storage.models import StoragePool, Volume
from tests.factories import make_user
from tests.lab.guests import POOL
from tests.lab.hosts import LabHost, TwoHosts, start_two_hosts
from tests.lab.locks import LOCK_DIR
from tests.lab.virsh import virsh
from tests.runs import run
from tests.stack import wait_until

pytestmark = pytest.mark.integration
MIB = 1024**2
POOL_PATH = "/var/lib/libvirt/images/kvmweb-lab"


def _other_users(lock: Path) -> list[int]:
    """Processes other than this one holding the lab's users lock file open."""
    users = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fd_dir.parent.name)
        if pid == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == str(lock) for fd in fd_dir.iterdir()):
                users.append(pid)
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
    return users


@pytest.fixture(scope="module")
def h1(request: pytest.FixtureRequest) -> Iterator[LabHost]:
    """Lab host h1, used by no other test run: killing its libvirtd must disturb nobody else.

    Whatever happens in the test, h1's libvirtd runs again afterwards."""
    others = _other_users(LOCK_DIR / "kvmweb-lab-two-hosts.users")
    if others:
        pytest.fail(f"other processes use the two lab hosts ({others}); h1's libvirtd cannot be killed now")
    hosts: TwoHosts = request.getfixturevalue("two_hosts")
    yield hosts.h1
    start_two_hosts()


@pytest.fixture
def setup(h1: LabHost, transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """h1 indexed in kvmweb as host "lab-h1", an admin's API client; no worker (see the module's doc)."""
    monkeypatch.setattr(operation_services, "_enqueue", lambda op_id, kind, queue: None)
    ada = make_user("ada", admin=True)
    host = Host.objects.create(name="lab-h1", uri=h1.uri, state=Host.State.CONNECTED)
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    made: list[str] = []
    yield {"api": api, "host": host, "pool": StoragePool.objects.get(host=host, name=POOL), "made": made}
    for name in made:
        found = volumes.volume_in_pool(h1.target, POOL, name)
        if found is not None and found.path:
            volumes.delete_volume(h1.target, found.path)
    virt.close_all()


def libvirtd_pid(host: LabHost) -> int:
    """The pid of the host's own libvirtd (its pid file sits next to its socket's directory), checked
    to be a libvirtd in the host's network namespace."""
    pid = int((Path(host.socket).parent.parent / "libvirtd.pid").read_text().strip())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "libvirtd"
    netns = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True, check=True)
    assert netns.stdout.strip() == host.netns, (pid, netns.stdout)
    return pid


def kill_libvirtd(host: LabHost) -> None:
    pid = libvirtd_pid(host)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=10, what=f"libvirtd {pid} of {host.name} to die")


def queued(setup: dict[str, Any], url: str, body: dict[str, Any]) -> Operation:
    """POST an action to the API and run the operation it queues here."""
    response = setup["api"].post(url, body, content_type="application/json")
    assert response.status_code == 202, response.content
    op = run(Operation.objects.get(pk=response.json()["operation"]["id"]))
    assert op.status == "succeeded", (op.error, op.error_detail)
    return op


def test_a_host_that_dies_mid_upload_fails_it_naming_the_host_and_what_is_left(setup, h1, monkeypatch) -> None:
    name = f"kvw-lost-{os.getpid()}.img"
    setup["made"].append(name)
    size = 256 * MIB
    response = setup["api"].post(
        f"/api/v1/pools/{setup['pool'].pk}/upload/?name={name}&image_format=raw",
        os.urandom(size),
        content_type="application/octet-stream",
    )
    assert response.status_code == 202, response.content
    op = Operation.objects.get(pk=response.json()["operation"]["id"])
    spooled = uploads.upload_dir() / op.params["file"]
    assert spooled.stat().st_size == size

    # The chunks the operation hands to the adapter pass through here; after 8 MiB, h1's libvirtd dies.
    real, sent = volumes.upload_volume, list[int]()

    def upload_volume(
        target: virt.HostTarget, pool: str, name: str, chunks: Iterable[bytes], **kwargs: Any
    ) -> virt.VolumeRecord:
        def killing_midway() -> Iterator[bytes]:
            for chunk in chunks:
                if len(sent) == 8:
                    kill_libvirtd(h1)
                sent.append(len(chunk))
                yield chunk

        return real(target, pool, name, killing_midway(), **kwargs)

    monkeypatch.setattr(volumes, "upload_volume", upload_volume)
    ended = run(op)

    assert ended.status == "failed" and 8 < len(sent) < size // MIB, (ended.status, len(sent))
    assert ended.error.startswith("The connection to lab-h1 was lost during the upload"), ended.error
    assert not spooled.exists()
    # The host was down when the partial volume should have gone, so the message says what is left.
    assert f"The partial volume {POOL}/{name} could not be removed" in ended.error, ended.error

    # Once h1 is back, the partial volume is there as the message said, and kvmweb deletes it.
    start_two_hosts()
    virsh(h1.uri, "pool-refresh", POOL, timeout=30)
    left = volumes.volume_in_pool(h1.target, POOL, name)
    assert left is not None and left.path == f"{POOL_PATH}/{name}"
    assert h1.host_path(left.path).is_file()
    queued(setup, f"/api/v1/pools/{setup['pool'].pk}/actions/refresh/", {})
    row = Volume.objects.get(pool=setup["pool"], name=name)
    queued(setup, f"/api/v1/volumes/{row.pk}/actions/delete/", {"confirm": name})
    assert volumes.volume_in_pool(h1.target, POOL, name) is None
    assert not h1.host_path(left.path).exists()
