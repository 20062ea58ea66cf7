"""In Chromium, on the lab: upload an ISO and watch its progress bar reach done, create a volume from the
pool page, and take a snapshot of the running tiny guest on its VM page, then revert to it.

The stack is the one `make run` starts (nginx, gunicorn, daphne, a worker, the events watcher); the
volumes made here have a unique prefix and are deleted afterwards, and so are the guest's snapshots.
"""

import io
from collections.abc import Iterator
from typing import Any

import pycdlib
import pytest
from playwright.sync_api import Page, expect

from kvmweb.operations.models import Operation
from kvmweb.virt import volumes
from storage.models import StoragePool, Volume
from tests.e2e import test_console_e2e
from tests.e2e.conftest import screenshot
from tests.e2e.test_hosts_e2e import log_in
from tests.factories import make_user
from tests.integration import test_volumes_service_lab as volume_service
from tests.integration.test_snapshot_tree_lab import drop_snapshots
from tests.lab.guests import POOL, Guest
from tests.stack import wait_until

pytestmark = pytest.mark.e2e

# The running tiny guest as the events process indexed it, with the lab host "lab": that module's fixture.
indexed_guest = test_console_e2e.indexed_guest
# A unique volume name prefix, whose volumes in the lab pool are deleted afterwards.
prefix = volume_service.prefix


@pytest.fixture
def lab(live_stack, indexed_guest) -> Iterator[dict[str, Any]]:
    """The lab as kvmweb's events process indexed it (its pool and running tiny guest), and ada's page."""
    wait_until(
        lambda: StoragePool.objects.filter(host__name="lab", name=POOL, state="running").exists(),
        timeout=30,
        what="the events process indexing the lab's pools",
        log=live_stack["log"],
    )
    make_user("ada", admin=True)
    yield {"pool": StoragePool.objects.get(host__name="lab", name=POOL), "guest": indexed_guest}
    drop_snapshots(indexed_guest)


@pytest.fixture
def page(browser, live_stack) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, live_stack["base"], "ada")
    yield page
    page.close()


def small_iso() -> bytes:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, vol_ident="KVMWEB_E2E")
    text = b"kvmweb end-to-end upload\n" * 4000
    iso.add_fp(io.BytesIO(text), len(text), "/README.TXT;1", joliet_path="/readme.txt")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def finished(page: Page, kind: str, target_id: str) -> Operation:
    """Wait for the newest operation `kind` on the target to end (so nothing still writes once a test returns).

    If the page queued none, the failure shows what the page said instead (a refusal is a red toast).
    """
    ops = Operation.objects.filter(kind=kind, target_id=target_id)
    try:
        wait_until(ops.exists, timeout=20, what=f"the page to queue a {kind} operation")
    except TimeoutError as error:
        said = page.locator("#toasts").inner_text() or "(no toast)"
        raise AssertionError(f"{error}; the page said: {said}; it is at {page.url}") from error

    def ended() -> bool:
        return ops.order_by("-pk")[0].status in ("succeeded", "failed", "cancelled")

    wait_until(ended, timeout=180, what=f"the {kind} operation to end")
    return Operation.objects.filter(kind=kind, target_id=target_id).latest("pk")


def test_an_iso_uploaded_from_the_page_shows_its_progress_to_done(live_stack, lab, page, prefix) -> None:
    data = small_iso()
    name = f"{prefix}-seed.iso"
    page.goto(f"{live_stack['base']}/storage/pools/{lab['pool'].pk}/upload/")
    page.set_input_files("#up-file", files=[{"name": name, "mimeType": "application/x-iso9660-image", "buffer": data}])
    expect(page.locator("#up-name")).to_have_value(name)  # filled in from the file's name
    page.click("#up-start")
    op = finished(page, "volume.upload", f"new:{lab['pool'].pk}:{name}")
    assert op.status == "succeeded", (op.error, op.error_detail)

    expect(page.locator("#up-status")).to_have_text(f"Done: {name} is in the pool.", timeout=60_000)
    expect(page.locator("#up-progress")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#up-progress .progress-bar")).to_have_attribute("style", "width: 100%;")
    screenshot(page, "storage-upload-done")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "storage-upload-done-phone")

    volume = Volume.objects.get(pool=lab["pool"], name=name)
    found = volumes.volume_by_path(lab["guest"].host.target, volume.path)
    assert found is not None and found.capacity == 1024**2  # a seed-sized ISO is padded to 1 MiB
    assert b"".join(volumes.download_volume(lab["guest"].host.target, volume.path))[: len(data)] == data


def test_a_volume_created_on_the_pool_page_appears_in_its_table(live_stack, lab, page, prefix) -> None:
    name = f"{prefix}-disk.img"
    page.goto(f"{live_stack['base']}/storage/pools/{lab['pool'].pk}/")
    page.click('a[href="#new-volume"]')
    page.fill("#nv-name", name)
    page.fill("#nv-size", "16")
    page.select_option("#nv-unit", "MiB")
    page.select_option("#nv-format", "raw")
    page.select_option("#nv-prov", "full")
    screenshot(page, "storage-new-volume-form")
    page.click("#new-volume button[type=submit]")

    op = finished(page, "volume.create", f"new:{lab['pool'].pk}:{name}")
    assert op.status == "succeeded", (op.error, op.error_detail)
    row = page.locator(f'tr[data-volume-name="{name}"]')
    expect(row).to_be_visible(timeout=30_000)
    expect(row).to_contain_text("thick")  # fully allocated: its whole capacity is on disk
    screenshot(page, "storage-volume-created")
    assert Volume.objects.get(pool=lab["pool"], name=name).allocation >= 16 * 1024**2


def test_a_raw_volume_is_copied_into_a_compressed_qcow2_from_its_page(live_stack, lab, page, prefix) -> None:
    source, copy = f"{prefix}-plain.img", f"{prefix}-packed.qcow2"
    page.goto(f"{live_stack['base']}/storage/pools/{lab['pool'].pk}/")
    page.click('a[href="#new-volume"]')
    page.fill("#nv-name", source)
    page.fill("#nv-size", "8")
    page.select_option("#nv-unit", "MiB")
    page.select_option("#nv-format", "raw")
    page.click("#new-volume button[type=submit]")
    assert finished(page, "volume.create", f"new:{lab['pool'].pk}:{source}").status == "succeeded"

    volume = Volume.objects.get(pool=lab["pool"], name=source)
    page.goto(f"{live_stack['base']}/storage/volumes/{volume.pk}/")
    expect(page.locator("#cl-compress")).to_be_disabled()  # a raw copy cannot be compressed
    page.select_option("#cl-format", "qcow2")
    page.check("#cl-compress")
    page.fill("#cl-name", copy)
    screenshot(page, "storage-compressed-copy-form")
    page.click("#clone button[type=submit]")

    op = finished(page, "volume.clone", str(volume.pk))
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert any("Compressing" in entry["message"] for entry in op.log)
    made = volumes.volume_in_pool(lab["guest"].host.target, POOL, copy)
    assert made is not None and made.format == "qcow2" and made.capacity == 8 * 1024**2
    assert made.allocation < 1024**2  # eight MiB of zeros compress to next to nothing


def test_a_snapshot_taken_on_the_vm_page_can_be_reverted_to(live_stack, lab, page) -> None:
    guest: Guest = lab["guest"]
    name = "e2e-snap"
    page.goto(f"{live_stack['base']}/vms/{guest.uuid}/#snapshots")
    page.click("#tab-snapshots-btn")
    page.fill("#snap-name", name)
    page.fill("#snap-description", "taken in Chromium")
    page.click("#snap-create button[type=submit]")

    row = page.locator(f'#snapshot-tree tr[data-snapshot="{name}"]')
    expect(row).to_be_visible(timeout=180_000)
    expect(row).to_have_attribute("aria-current", "true")
    expect(row).to_contain_text("with memory")
    op = finished(page, "vm.snapshot-create", str(guest.uuid))
    assert op.status == "succeeded", (op.error, op.error_detail)
    screenshot(page, "vm-snapshot-taken")

    # On the same page: the live refresh that follows the operation's end may swap the tab's forms, even
    # while the confirmation dialog is open (static/js/actions.js sends the form the user answered for).
    row.get_by_role("button", name=f"Revert to {name}").click()
    dialog = page.locator("[data-confirm-ok]")
    expect(dialog).to_contain_text(f"Revert to {name}")
    dialog.click()
    op = finished(page, "vm.snapshot-revert", str(guest.uuid))
    assert op.status == "succeeded", (op.error, op.error_detail)
    assert op.result == {"snapshot": name, "state": "running"}
    expect(page.locator("h1 [data-field=state]")).to_contain_text("Running")
    expect(page.locator('[data-vm-action="shutdown"]')).to_be_visible()  # the actions of a running VM
    expect(row).to_have_attribute("aria-current", "true")
    screenshot(page, "vm-snapshot-reverted")
    assert guest.is_running()

    page.set_viewport_size({"width": 390, "height": 844})
    table = page.locator("#vm-snapshots .table-responsive")
    assert table.evaluate("el => el.scrollWidth <= el.clientWidth")  # a phone need not scroll it sideways
    expect(row.locator(".d-md-none")).to_contain_text("internal")  # when taken, and the kind, under the name
    revert = row.get_by_role("button", name=f"Revert to {name}").bounding_box()
    assert revert is not None and revert["x"] + revert["width"] <= 390  # not cut off at the right
    screenshot(page, "vm-snapshot-phone")
