"""Volumes through the service, API and pages, on libvirt's test driver. ada administers; alice is a
member of the host (she sees its pools, may not change them); bob sees nothing."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.audit.models import AuditEvent
from kvmweb.errors import Conflict, Invalid
from kvmweb.operations.models import Operation
from kvmweb.virt import volumes as virt_volumes
from kvmweb.virt.xml import DiskSpec, DomainSpec, VolumeSpec, build_domain_xml
from kvmweb.virt.xml.facts import volume_facts
from storage import uploads
from storage.models import StoragePool, Volume
from storage.volumes import volume_action, volume_create
from tests.bodies import Arriving
from tests.factories import make_host
from tests.runs import actor_of, run
from vms.edit.checks import check_attach_disk
from vms.models import VirtualMachine

TEST_URI = "test:///default"
TARGET = virt.HostTarget(TEST_URI)
POOL = "default-pool"
MIB = 1024**2


@pytest.fixture
def lab(alice):  # type: ignore[no-untyped-def]
    host = make_host("testhost", uri=TEST_URI, members=(alice,))
    reconcile(host)
    return host


@pytest.fixture(autouse=True)
def _clean_test_driver(tmp_path, settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    settings.VAR_DIR = tmp_path
    before_domains = {d.uuid for d in virt.list_domains(TARGET)}
    before_volumes = {v.path for v in virt_volumes.host_volumes(TARGET)}
    yield
    for domain in virt.list_domains(TARGET):
        if domain.uuid not in before_domains:
            virt.undefine_domain(TARGET, domain.uuid)
    made = [v for v in virt_volumes.host_volumes(TARGET) if v.path and v.path not in before_volumes]
    for volume in sorted(made, key=lambda v: v.backing_path is None):
        virt_volumes.delete_volume(TARGET, volume.path or "")
    virt.close_all()


def reconcile(host: Any) -> None:
    host_reconcile(host=host, inventory=virt.get_inventory(TARGET))


def pool_row(host: Any) -> StoragePool:
    return StoragePool.objects.get(host=host, name=POOL)


def make_volume(host: Any, name: str, *, fmt: str = "qcow2", backing: str | None = None) -> Volume:
    if backing is None:
        virt_volumes.create_volume(TARGET, POOL, VolumeSpec(name=name, capacity_bytes=16 * MIB, format=fmt))  # type: ignore[arg-type]
    else:
        virt_volumes.create_linked_volume(TARGET, POOL, backing, name)
    reconcile(host)
    return Volume.objects.get(pool__host=host, name=name)


def api(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")


def define_guest(host: Any, volume: Volume) -> str:
    name = f"g-{uuid.uuid4().hex[:8]}"
    spec = DomainSpec(
        name=name, uuid=str(uuid.uuid4()), memory_mib=128, vcpus=1, disks=(DiskSpec(pool=POOL, volume=volume.name),)
    )
    virt.define_domain(TARGET, build_domain_xml(spec))
    reconcile(host)
    return name


# --- create ------------------------------------------------------------------------------------------------------


def test_admin_creates_thin_and_full_volumes_through_the_api(lab, ada, queued):  # type: ignore[no-untyped-def]
    client, pool = api(ada), pool_row(lab)
    # The test driver refuses qcow2 preallocation flags; a full raw volume needs none.
    for name, fmt, provisioning in (("thin.raw", "raw", "thin"), ("full.raw", "raw", "full")):
        body = {"pool": pool.pk, "name": name, "size": 8, "unit": "MiB", "format": fmt, "provisioning": provisioning}
        response = client.post("/api/v1/volumes/", body, content_type="application/json")
        assert response.status_code == 202, response.json()
        op = Operation.objects.get(pk=response.json()["operation"]["id"])
        assert op.kind == "volume.create" and run(op).status == "succeeded", op.error
    thin, full = Volume.objects.get(name="thin.raw"), Volume.objects.get(name="full.raw")
    assert (thin.format, thin.capacity) == ("raw", 8 * MIB)
    assert (full.format, full.capacity) == ("raw", 8 * MIB)
    assert full.allocation == 8 * MIB and thin.allocation < thin.capacity
    listed = client.get(f"/api/v1/volumes/?pool={pool.pk}").json()["results"]
    assert {"thin.raw", "full.raw"} <= {row["name"] for row in listed}
    detail = client.get(f"/api/v1/volumes/{thin.pk}/").json()
    assert detail["users"] == [] and detail["backing_chain"] == [] and detail["path"] == thin.path


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"name": "../etc/passwd", "size": 1, "unit": "GiB"}, "cannot contain '/' or '..'"),
        ({"name": "a/b", "size": 1, "unit": "GiB"}, "cannot contain '/' or '..'"),
        ({"name": "a..b", "size": 1, "unit": "GiB"}, "cannot contain '/' or '..'"),
        ({"name": ".hidden", "size": 1, "unit": "GiB"}, "Volume name"),
        ({"name": "ok", "size": 0, "unit": "GiB"}, "positive number"),
        ({"name": "ok", "size": -5, "unit": "GiB"}, "positive number"),
        ({"name": "ok", "size": "lots", "unit": "GiB"}, "positive number"),
        ({"name": "ok", "size": 100, "unit": "TiB"}, "from 1 MiB to 64 TiB"),
        ({"name": "ok", "size": 1, "unit": "PB"}, "Unknown unit"),
        ({"name": "ok", "size": 1, "unit": "GiB", "format": "vmdk"}, "Unknown format"),
        (
            {"name": "ok", "size": 1, "unit": "GiB", "format": "raw", "provisioning": "metadata"},
            "only applies to qcow2",
        ),
        ({"name": "ok", "size": 1, "unit": "TiB", "provisioning": "full"}, "Not enough space in pool"),
    ],
)
def test_bad_sizes_names_and_full_pools_are_refused_before_libvirt(lab, ada, queued, data, words):  # type: ignore[no-untyped-def]
    with pytest.raises(Invalid, match=re.escape(words)):
        volume_create(actor=actor_of(ada), pool=pool_row(lab), data=data)
    assert not Operation.objects.exists()


def test_a_taken_name_is_refused(lab, ada, queued):  # type: ignore[no-untyped-def]
    make_volume(lab, "taken.qcow2")
    with pytest.raises(Conflict, match=r"already has a volume named taken\.qcow2"):
        volume_create(actor=actor_of(ada), pool=pool_row(lab), data={"name": "taken.qcow2", "size": 1, "unit": "GiB"})


# --- actions -----------------------------------------------------------------------------------------------------


def test_delete_is_refused_while_a_vm_uses_the_volume_naming_it(lab, ada, queued):  # type: ignore[no-untyped-def]
    volume = make_volume(lab, "used.qcow2")
    guest = define_guest(lab, volume)
    response = api(ada).post(
        f"/api/v1/volumes/{volume.pk}/actions/delete/", {"confirm": volume.name}, content_type="application/json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["message"] == f"Cannot delete used.qcow2: it is used by VM {guest}."
    assert not Operation.objects.exists() and virt_volumes.volume_by_path(TARGET, volume.path) is not None


def test_delete_is_refused_while_a_volume_uses_it_as_backing_file(lab, ada, queued):  # type: ignore[no-untyped-def]
    base = make_volume(lab, "base.qcow2")
    make_volume(lab, "overlay.qcow2", backing=base.path)
    with pytest.raises(Conflict, match=r"used by volume overlay\.qcow2 \(backing file\)"):
        volume_action(actor=actor_of(ada), volume=base, action="delete", params={"confirm": base.name})
    overlay = Volume.objects.get(name="overlay.qcow2")
    chain = api(ada).get(f"/api/v1/volumes/{overlay.pk}/").json()["backing_chain"]
    assert chain == [{"path": base.path, "id": str(base.pk), "format": "qcow2"}]


def test_delete_needs_the_typed_name_then_removes_volume_and_row(lab, ada, queued):  # type: ignore[no-untyped-def]
    volume = make_volume(lab, "bye.raw", fmt="raw")
    with pytest.raises(Invalid, match=r"Type the volume's name, bye\.raw"):
        volume_action(actor=actor_of(ada), volume=volume, action="delete", params={"confirm": "bye"})
    op = volume_action(actor=actor_of(ada), volume=volume, action="delete", params={"confirm": "bye.raw"})
    assert run(op).status == "succeeded", op.error
    assert virt_volumes.volume_by_path(TARGET, volume.path) is None
    assert not Volume.objects.filter(pk=volume.pk).exists()


def test_converting_to_the_same_format_is_refused(lab, ada, queued):  # type: ignore[no-untyped-def]
    volume = make_volume(lab, "same.qcow2")
    with pytest.raises(Invalid, match="already qcow2; converting it to the same format"):
        volume_action(actor=actor_of(ada), volume=volume, action="convert", params={"format": "qcow2"})
    with pytest.raises(Invalid, match="already qcow2; converting it to the same format"):
        volume_action(actor=actor_of(ada), volume=volume, action="convert", params={"format": "qcow2", "compress": "1"})
    assert not Operation.objects.exists()


def test_convert_defaults_to_the_other_format_and_keeps_the_source(lab, ada, queued):  # type: ignore[no-untyped-def]
    volume = make_volume(lab, "src.qcow2")
    op = volume_action(actor=actor_of(ada), volume=volume, action="convert", params={})
    assert op.kind == "volume.clone" and op.params == {"pool": volume.pool_id, "name": "src-copy.raw", "format": "raw"}


ONLY_QCOW2 = "Only a qcow2 copy can be compressed; choose qcow2, or leave compression off for a raw copy."


def test_compressing_a_raw_copy_is_refused_on_the_compress_field(lab, ada, queued):  # type: ignore[no-untyped-def]
    volume = make_volume(lab, "cmp.qcow2")
    for action, params in (("convert", {"compress": "1"}), ("clone", {"format": "raw", "compress": "on"})):
        with pytest.raises(Invalid) as refused:
            volume_action(actor=actor_of(ada), volume=volume, action=action, params=params)
        assert (refused.value.message, refused.value.details) == (ONLY_QCOW2, {"compress": ONLY_QCOW2})
    assert not Operation.objects.exists()


def test_a_compressed_qcow2_copy_is_queued_with_compress_in_its_params(lab, ada, queued):  # type: ignore[no-untyped-def]
    raw, qcow2 = make_volume(lab, "cmp.raw", fmt="raw"), make_volume(lab, "cmp.qcow2")

    converted = volume_action(actor=actor_of(ada), volume=raw, action="convert", params={"compress": "1"})
    # A compressing clone within qcow2 is a compacting copy, so it is not refused as "the same format".
    cloned = volume_action(actor=actor_of(ada), volume=qcow2, action="clone", params={"compress": "on"})

    pool = raw.pool_id
    assert converted.params == {"pool": pool, "name": "cmp-copy.qcow2", "format": "qcow2", "compress": True}
    assert cloned.params == {"pool": pool, "name": "cmp-copy.qcow2", "format": "qcow2", "compress": True}
    assert [op.kind for op in (converted, cloned)] == ["volume.clone", "volume.clone"]


def test_a_volume_on_a_backing_file_is_not_compressed(lab, ada, queued):  # type: ignore[no-untyped-def]
    base = make_volume(lab, "cmp-base.qcow2")
    top = make_volume(lab, "cmp-top.qcow2", backing=base.path)
    with pytest.raises(Invalid, match=r"built on a backing file.*Copy it without compression first") as refused:
        volume_action(actor=actor_of(ada), volume=top, action="clone", params={"compress": "1"})
    assert list(refused.value.details) == ["compress"]
    assert not Operation.objects.exists()


def test_a_compressed_copy_into_a_pool_that_is_not_a_directory_is_refused(lab, ada, queued):  # type: ignore[no-untyped-def]
    volume = make_volume(lab, "cmp-lv.qcow2")
    vg = StoragePool.objects.create(
        host=lab, uuid=uuid.uuid4(), name="vg0", type="logical", state="running", available=100 * MIB
    )
    message = "Storage pool vg0 is logical; compressed copies go in directory (file) pools."
    with pytest.raises(Invalid) as refused:
        volume_action(actor=actor_of(ada), volume=volume, action="clone", params={"pool": vg.pk, "compress": "1"})
    assert (refused.value.message, refused.value.details) == (message, {"compress": message})
    assert not Operation.objects.exists()


def test_the_api_takes_compress_true_and_refuses_it_for_a_raw_copy(lab, ada, queued):  # type: ignore[no-untyped-def]
    volume = make_volume(lab, "cmp-api.raw", fmt="raw")
    actions = f"/api/v1/volumes/{volume.pk}/actions"

    # A clone keeps the source's format, raw here.
    refused = api(ada).post(f"{actions}/clone/", {"compress": True}, content_type="application/json")
    accepted = api(ada).post(
        f"{actions}/convert/", {"name": "small.qcow2", "compress": True}, content_type="application/json"
    )

    assert refused.status_code == 400
    assert refused.json() == {"error": {"code": "invalid", "message": ONLY_QCOW2, "details": {"compress": ONLY_QCOW2}}}
    assert accepted.status_code == 202, accepted.json()
    op = Operation.objects.get(pk=accepted.json()["operation"]["id"])
    assert op.params == {"pool": volume.pool_id, "name": "small.qcow2", "format": "qcow2", "compress": True}


def test_resize_only_grows(lab, ada, queued):  # type: ignore[no-untyped-def]
    volume = make_volume(lab, "grow.qcow2")
    with pytest.raises(Invalid, match="can only grow"):
        volume_action(actor=actor_of(ada), volume=volume, action="resize", params={"size": 8, "unit": "MiB"})
    with pytest.raises(Invalid, match="already 16 MiB"):
        volume_action(actor=actor_of(ada), volume=volume, action="resize", params={"size": 16, "unit": "MiB"})
    op = volume_action(actor=actor_of(ada), volume=volume, action="resize", params={"size": 32, "unit": "MiB"})
    # The test driver cannot resize volumes: the lab test runs this one.
    assert op.kind == "volume.resize" and op.params == {"capacity": 32 * MIB}


def test_unknown_action_is_refused(lab, ada, queued):  # type: ignore[no-untyped-def]
    volume = make_volume(lab, "x.qcow2")
    response = api(ada).post(f"/api/v1/volumes/{volume.pk}/actions/explode/", {}, content_type="application/json")
    assert response.status_code == 400 and "Unknown volume action 'explode'" in response.json()["error"]["message"]


# --- uploads -----------------------------------------------------------------------------------------------------


def test_upload_larger_than_the_pool_is_refused_before_reading(lab, ada, queued, tmp_path):  # type: ignore[no-untyped-def]
    pool = pool_row(lab)
    body = io.BytesIO(b"x" * 10)
    with pytest.raises(Invalid, match="Not enough space in pool default-pool"):
        uploads.upload_receive(
            actor=actor_of(ada), pool=pool, name="big.iso", fmt="raw", size=pool.available + 1, body=body
        )
    assert body.tell() == 0 and not Operation.objects.exists()
    assert not (tmp_path / "uploads").exists() or list((tmp_path / "uploads").iterdir()) == []


def test_upload_shorter_than_declared_leaves_nothing(lab, ada, queued, tmp_path):  # type: ignore[no-untyped-def]
    with pytest.raises(Invalid, match="ended after 5 of the 10 bytes"):
        uploads.upload_receive(
            actor=actor_of(ada), pool=pool_row(lab), name="short.iso", fmt="raw", size=10, body=io.BytesIO(b"x" * 5)
        )
    assert list((tmp_path / "uploads").iterdir()) == [] and not Operation.objects.exists()


def test_cancelling_a_queued_upload_removes_its_file(lab, ada, queued, tmp_path):  # type: ignore[no-untyped-def]
    client = api(ada)
    response = client.post(
        f"/api/v1/pools/{pool_row(lab).pk}/upload/?name=seed.iso", b"a" * 4096, content_type="application/octet-stream"
    )
    assert response.status_code == 202, response.json()
    op_id = response.json()["operation"]["id"]
    [part] = list((tmp_path / "uploads").iterdir())
    assert part.read_bytes() == b"a" * 4096
    cancelled = client.post(f"/api/v1/volumes/uploads/{op_id}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["operation"]["status"] == "cancelled"
    assert not part.exists()
    assert client.post(f"/api/v1/volumes/uploads/{op_id}/cancel/").status_code == 409


def test_an_upload_starts_its_operation_once_the_first_chunk_is_on_disk(lab, ada, queued, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(uploads, "UPLOAD_CHUNK", 1024)
    seen: list[tuple[int, list[int]]] = []
    started = Operation.objects.filter(kind="volume.upload").values_list("pk", flat=True)
    body = Arriving(b"d" * 4096, 1024, after=lambda n: seen.append((n, list(started))))
    op = uploads.upload_receive(actor=actor_of(ada), pool=pool_row(lab), name="g.img", fmt="raw", size=4096, body=body)
    # Started after the first chunk, while three more were still to come: the worker follows the file.
    assert seen == [(1, [op.pk]), (2, [op.pk]), (3, [op.pk]), (4, [op.pk])]
    assert (tmp_path / "uploads" / op.params["file"]).read_bytes() == b"d" * 4096
    assert op.status == Operation.Status.PENDING


@pytest.mark.parametrize(
    ("size", "message"),
    [(8192, "The upload ended after 3072 of the 8192 bytes"), (2048, "The upload is longer than the 2048 bytes")],
)
def test_a_body_other_than_announced_fails_its_started_operation_and_leaves_no_file(  # type: ignore[no-untyped-def]
    lab, ada, queued, monkeypatch, tmp_path, size, message
):
    monkeypatch.setattr(uploads, "UPLOAD_CHUNK", 1024)
    body = Arriving(b"d" * 3072, 1024)  # the operation starts after its first chunk
    with pytest.raises(Invalid, match=message):
        uploads.upload_receive(actor=actor_of(ada), pool=pool_row(lab), name="b.img", fmt="raw", size=size, body=body)
    op = Operation.objects.get(kind="volume.upload")
    assert op.status == "failed" and op.error.startswith(message), op.error
    assert list((tmp_path / "uploads").iterdir()) == []
    assert AuditEvent.objects.get(operation_id=op.pk).outcome == AuditEvent.Outcome.FAILED


def test_cancelling_an_upload_still_arriving_stops_reading_it(lab, ada, queued, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(uploads, "UPLOAD_CHUNK", 1024)
    monkeypatch.setattr(uploads, "CHECK_INTERVAL", 0)

    def cancel_after_two(n: int) -> None:
        if n == 2:
            uploads.upload_cancel(actor=actor_of(ada), op=Operation.objects.get(kind="volume.upload"))

    body = Arriving(b"d" * 100 * 1024, 1024, after=cancel_after_two)
    with pytest.raises(uploads.UploadCancelled, match="Cancelled by ada"):
        uploads.upload_receive(
            actor=actor_of(ada), pool=pool_row(lab), name="c.img", fmt="raw", size=100 * 1024, body=body
        )
    assert body.served == 3 and Operation.objects.get(kind="volume.upload").status == "cancelled"
    assert list((tmp_path / "uploads").iterdir()) == []


# --- access ------------------------------------------------------------------------------------------------------


def _endpoints(pool: StoragePool, volume: Volume) -> list[tuple[str, str, Any, str]]:
    v = f"/api/v1/volumes/{volume.pk}"
    create = {"pool": pool.pk, "name": "n.qcow2", "size": 1, "unit": "MiB"}
    return [
        ("post", "/api/v1/volumes/", create, "application/json"),
        ("post", f"{v}/actions/resize/", {"size": 32, "unit": "MiB"}, "application/json"),
        ("post", f"{v}/actions/clone/", {"name": "c.qcow2"}, "application/json"),
        ("post", f"{v}/actions/convert/", {"name": "c.raw", "format": "raw"}, "application/json"),
        ("post", f"{v}/actions/wipe/", {"confirm": volume.name}, "application/json"),
        ("post", f"{v}/actions/delete/", {"confirm": volume.name}, "application/json"),
        ("get", f"{v}/download/", None, ""),
        ("post", f"/api/v1/pools/{pool.pk}/upload/?name=u.iso", b"abc", "application/octet-stream"),
    ]


def _call(client: Client, method: str, url: str, body: Any, content_type: str) -> int:
    if method == "get":
        return client.get(url).status_code
    return client.post(url, body, content_type=content_type).status_code


def test_only_administrators_change_volumes_members_get_403_others_404(lab, ada, alice, bob, queued):  # type: ignore[no-untyped-def]
    volume, pool = make_volume(lab, "guarded.qcow2"), pool_row(lab)
    for method, url, body, content_type in _endpoints(pool, volume):
        assert _call(Client(), method, url, body, content_type) in (401, 403), url
        assert _call(api(bob), method, url, body, content_type) == 404, url
        assert _call(api(alice), method, url, body, content_type) == 403, url
    assert not Operation.objects.exists()
    for method, url, body, content_type in _endpoints(pool, volume):
        if method == "post":
            status = _call(api(ada), method, url, body, content_type)
            assert status == 202, url
            Operation.objects.update(status="succeeded")  # one active operation per volume: let the next one in


def test_reading_volumes_follows_pool_visibility(lab, ada, alice, bob):  # type: ignore[no-untyped-def]
    volume = make_volume(lab, "seen.qcow2")
    for user in (ada, alice):
        assert api(user).get(f"/api/v1/volumes/{volume.pk}/").status_code == 200
        assert volume.name in {row["name"] for row in api(user).get("/api/v1/volumes/").json()["results"]}
    assert api(bob).get(f"/api/v1/volumes/{volume.pk}/").status_code == 404
    assert api(bob).get("/api/v1/volumes/").json()["results"] == []
    assert Client().get(f"/api/v1/volumes/{volume.pk}/").status_code in (401, 403)


def test_pages_for_admin_member_other_and_anonymous(lab, ada, alice, bob, queued):  # type: ignore[no-untyped-def]
    volume, pool = make_volume(lab, "page.iso", fmt="raw"), pool_row(lab)
    pages = [f"/storage/volumes/{volume.pk}/", "/storage/isos/", f"/storage/pools/{pool.pk}/upload/"]
    admin, member, other = Client(), Client(), Client()
    admin.force_login(ada)
    member.force_login(alice)
    other.force_login(bob)
    for url in pages:
        assert admin.get(url).status_code == 200, url
        assert Client().get(url).status_code == 302, url
    page = admin.get(f"/storage/volumes/{volume.pk}/").content.decode()
    assert "Type <strong>page.iso</strong> to confirm" in page and "never removed automatically" in page
    assert 'name="compress"' in page and "Compress (qcow2)" in page and "cannot compress" not in page
    assert "page.iso" in admin.get("/storage/isos/").content.decode()
    assert "page.iso" in admin.get(f"/storage/pools/{pool.pk}/").content.decode()
    assert member.get(f"/storage/volumes/{volume.pk}/").status_code == 200
    assert "Type <strong>" not in member.get(f"/storage/volumes/{volume.pk}/").content.decode()
    assert member.get(f"/storage/pools/{pool.pk}/upload/").status_code == 403
    assert other.get(f"/storage/volumes/{volume.pk}/").status_code == 404
    assert "page.iso" not in other.get("/storage/isos/").content.decode()
    action = f"/storage/volumes/{volume.pk}/actions/delete/"
    assert other.post(action, {"confirm": "page.iso"}).status_code == 404
    assert member.post(action, {"confirm": "page.iso"}).status_code == 403
    assert admin.post(action, {"confirm": "page.iso"}).status_code == 302
    assert list(Operation.objects.values_list("kind", flat=True)) == ["volume.delete"]
    create = f"/storage/pools/{pool.pk}/volumes/new/"
    assert member.post(create, {"name": "m.raw", "size": 1, "unit": "MiB"}).status_code == 403
    assert admin.post(create, {"name": "a.raw", "size": 1, "unit": "MiB", "format": "raw"}).status_code == 302
    assert Operation.objects.filter(kind="volume.create", params__name="a.raw").count() == 1


def test_upload_temp_files_live_under_the_var_dir(lab, ada, queued, tmp_path):  # type: ignore[no-untyped-def]
    assert uploads.upload_dir() == Path(tmp_path) / "uploads"


def test_a_signed_in_browser_uploads_with_its_csrf_token(lab, ada, tmp_path):  # type: ignore[no-untyped-def]
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(ada)
    browser.get(f"/storage/pools/{pool_row(lab).pk}/upload/")  # sets the csrftoken cookie
    url = f"/api/v1/pools/{pool_row(lab).pk}/upload/?name=b.iso&image_format=raw"
    assert browser.post(url, b"z" * 1000, content_type="application/octet-stream").status_code == 403
    token = browser.cookies["csrftoken"].value
    response = browser.post(url, b"z" * 1000, content_type="application/octet-stream", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 202, response.content
    op = Operation.objects.get(pk=response.json()["operation"]["id"])
    assert op.params["size"] == 1000 and (tmp_path / "uploads" / op.params["file"]).read_bytes() == b"z" * 1000


def test_the_adapter_follows_a_backing_chain_to_its_base(lab):  # type: ignore[no-untyped-def]
    base = make_volume(lab, "chain0.qcow2")
    middle = make_volume(lab, "chain1.qcow2", backing=base.path)
    top = make_volume(lab, "chain2.qcow2", backing=middle.path)
    chain = virt_volumes.backing_chain(TARGET, top.path)
    assert [link.path if not isinstance(link, str) else link for link in chain] == [middle.path, base.path]
    assert virt_volumes.backing_chain(TARGET, base.path) == ()


# --- volumes encrypted outside kvmweb ------------------------------------------------------------------------------


def test_a_volume_encrypted_outside_kvmweb_shows_as_encrypted_and_is_guarded(lab, ada, queued):  # type: ignore[no-untyped-def]
    secret = str(uuid.uuid4())
    # Made straight through libvirt (as `virsh vol-create` would), so kvmweb never recorded it as encrypted.
    spec = VolumeSpec(name="outside.qcow2", capacity_bytes=16 * MIB, format="qcow2", encryption_secret=secret)
    virt_volumes.create_volume(TARGET, POOL, spec)
    reconcile(lab)
    volume = Volume.objects.get(pool__host=lab, name="outside.qcow2")
    assert (volume.encryption, volume.secret_uuid) == ("luks", secret)

    for action in ("clone", "convert"):
        with pytest.raises(Invalid, match=r"encrypted \(LUKS\); kvmweb does not copy or convert"):
            volume_action(actor=actor_of(ada), volume=volume, action=action, params={})
    with pytest.raises(Invalid, match="encrypted; delete it instead"):
        volume_action(actor=actor_of(ada), volume=volume, action="wipe", params={"confirm": volume.name})
    assert not Operation.objects.exists()
    vm = VirtualMachine.objects.get(host=lab, name="test")
    assert check_attach_disk(vm, {"source": "existing", "volume": volume.pk})["secret"] == secret


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("<format type='qcow2'/>", (None, None)),
        ("<encryption format='luks'><secret type='passphrase' uuid='{u}'/></encryption>", ("luks", "{u}")),
        # What libvirt reports once a pool refresh has probed the image: the format, no secret.
        ("<encryption format='luks'/>", ("luks", None)),
        ("<encryption/>", ("default", None)),
    ],
)
def test_the_volume_facts_read_its_encryption_and_secret(target, expected):  # type: ignore[no-untyped-def]
    u = str(uuid.uuid4())
    xml = f"<volume><name>v</name><target><path>/p/v</path>{target.format(u=u)}</target></volume>"
    facts = volume_facts(xml)
    assert (facts.encryption, facts.secret_uuid) == tuple(None if e is None else e.format(u=u) for e in expected)
