"""Storage pools for real: API → Redis → a Celery worker → the lab's libvirtd.

A dir pool under /var/lib/libvirt/images/<unique> is defined, built (the directory appears), started,
given a volume through the adapter, refreshed (the volume row appears), stopped and undefined: the
directory and the volume's file stay. Undefining with "delete contents" removes both.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.models import Host
from kvmweb.operations.models import Operation
from kvmweb.virt import pools as virt_pools
from kvmweb.virt import volumes
from kvmweb.virt.xml import VolumeSpec
from storage.models import StoragePool, Volume
from tests.factories import make_user
from tests.lab.errors import LabError
from tests.lab.hosts import LabHost
from tests.lab.virsh import virsh
from tests.stack import wait_until

pytestmark = pytest.mark.integration
IMAGES = "/var/lib/libvirt/images"


@pytest.fixture
def pool_name(lab_host: LabHost) -> Iterator[str]:
    """A unique pool name; the pool, its volumes and its directory are removed afterwards."""
    name = f"it-pool-{uuid.uuid4().hex[:10]}"
    yield name
    uuid_ = virt_pools.get_pool_uuid(lab_host.target, name)
    if uuid_ is not None:
        with suppress(LabError):
            virsh(lab_host.uri, "pool-destroy", name, timeout=30)
        virsh(lab_host.uri, "pool-undefine", name, timeout=30)
    shutil.rmtree(lab_host.host_path(f"{IMAGES}/{name}"), ignore_errors=True)


@pytest.fixture
def setup(worker, lab_host, transactional_db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ada = make_user("ada", admin=True)
    host = Host.objects.create(name="lab", uri=lab_host.uri, state=Host.State.CONNECTED)
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ada).key}")
    return {"api": api, "host": host, "lab": lab_host, "log": worker}


def finish(setup: dict[str, Any], response: Any, timeout: float = 120) -> Operation:
    assert response.status_code == 202, response.content
    op_id = response.json()["operation"]["id"]
    wait_until(
        lambda: Operation.objects.get(pk=op_id).status in ("succeeded", "failed"),
        timeout=timeout,
        what=f"operation {op_id}",
        log=setup["log"],
    )
    op = Operation.objects.get(pk=op_id)
    assert op.status == "succeeded", op.error
    return op


def act(setup: dict[str, Any], pool: StoragePool, action: str, **body: Any) -> StoragePool:
    url = f"/api/v1/pools/{pool.pk}/actions/{action}/"
    finish(setup, setup["api"].post(url, body, content_type="application/json"))
    pool.refresh_from_db()
    return pool


def define_built_started_pool_with_a_volume(setup: dict[str, Any], name: str) -> tuple[StoragePool, str]:
    lab: LabHost = setup["lab"]
    path = f"{IMAGES}/{name}"
    body = {"host": setup["host"].pk, "type": "dir", "name": name, "target_path": path}
    finish(setup, setup["api"].post("/api/v1/pools/", body, content_type="application/json"))
    pool = StoragePool.objects.get(host=setup["host"], name=name)
    assert (pool.state, pool.type, pool.target_path) == ("inactive", "dir", path)
    assert not lab.host_path(path).exists()
    pool = act(setup, pool, "build")
    assert lab.host_path(path).is_dir()
    pool = act(setup, pool, "start")
    assert pool.state == "running" and pool.capacity > 0
    made = volumes.create_volume(lab.target, name, VolumeSpec(name="data.qcow2", capacity_bytes=16 << 20))
    assert made.path == f"{path}/data.qcow2"
    pool = act(setup, pool, "refresh")
    assert list(Volume.objects.filter(pool=pool).values_list("name", "format")) == [("data.qcow2", "qcow2")]
    return pool, made.path


def test_undefine_keeps_the_directory_and_its_volumes(setup, pool_name) -> None:  # type: ignore[no-untyped-def]
    lab: LabHost = setup["lab"]
    pool, volume_path = define_built_started_pool_with_a_volume(setup, pool_name)
    pool = act(setup, pool, "stop")
    assert pool.state == "inactive"
    assert virsh(lab.uri, "pool-info", pool_name).count("inactive") == 1
    pool = act(setup, pool, "undefine")
    assert pool.gone_since is not None
    assert virt_pools.get_pool_uuid(lab.target, pool_name) is None
    assert lab.host_path(volume_path).is_file()
    assert lab.host_path(f"{IMAGES}/{pool_name}").is_dir()


def test_undefine_with_delete_contents_removes_volumes_and_directory(setup, pool_name) -> None:  # type: ignore[no-untyped-def]
    lab: LabHost = setup["lab"]
    pool, volume_path = define_built_started_pool_with_a_volume(setup, pool_name)
    refused = setup["api"].post(
        f"/api/v1/pools/{pool.pk}/actions/undefine/",
        {"delete_contents": True, "confirm": "not-the-name"},
        content_type="application/json",
    )
    assert refused.status_code == 400
    op = finish(
        setup,
        setup["api"].post(
            f"/api/v1/pools/{pool.pk}/actions/undefine/",
            {"delete_contents": True, "confirm": pool_name},
            content_type="application/json",
        ),
    )
    assert op.result["deleted"] == [volume_path]
    assert virt_pools.get_pool_uuid(lab.target, pool_name) is None
    assert not lab.host_path(volume_path).exists()
    assert not lab.host_path(f"{IMAGES}/{pool_name}").exists()
