"""In Chromium, on the lab: a bulk start and a bulk force off of two real guests from the VM list. The batch bar
counts the operations as they end, the rows' badges change in place, and each VM gets its own operation and
audit event."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from kvmweb.audit.models import AuditEvent
from kvmweb.operations.models import Operation
from tests.e2e.conftest import screenshot, watched_lab_host
from tests.e2e.test_hosts_e2e import log_in
from tests.factories import make_user
from tests.lab.guests import Guest, ensure_guest, remove_guest, unique_guest_name
from vms.models import VirtualMachine

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_off_guests(lab_host) -> Iterator[list[Guest]]:  # type: ignore[no-untyped-def]
    names = [unique_guest_name(f"e2e-bulk{i}") for i in (1, 2)]
    for name in names:
        remove_guest(lab_host, name, delete_volume=False)
    guests = [ensure_guest(lab_host, name, data_disk=False, start=False) for name in names]
    yield guests
    for name in names:
        remove_guest(lab_host, name, delete_volume=False)


def bulk(page: Page, action: str) -> None:
    page.check("[data-select-all]")
    expect(page.locator("[data-bulk-count]")).to_have_text("2")
    page.click(f'[data-bulk-action="{action}"]')


def expect_batch_done(page: Page, label: str) -> None:
    bar = page.locator("[data-batch-bar]")
    expect(bar).to_contain_text(f"{label} · 2 VMs")
    expect(bar.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "2", timeout=60_000)
    expect(bar).to_contain_text("2 done")
    expect(bar.locator('[data-segment="done"]')).to_have_attribute("style", "width: 100.00%")


def test_bulk_start_and_force_off_show_the_batch_and_change_rows_in_place(  # type: ignore[no-untyped-def]
    live_stack, transactional_db, browser, libvirt_host, two_off_guests
):
    make_user("ada", admin=True)
    uuids = [g.uuid for g in two_off_guests]
    indexed = VirtualMachine.objects.filter(uuid__in=uuids, state="shutoff")
    watched_lab_host(live_stack, libvirt_host, ready=lambda host: indexed.count() == 2, what="the lab's guests")

    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, live_stack["base"], "ada")
    page.goto(f"{live_stack['base']}/vms/?search=e2e-bulk")
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live", timeout=30_000)
    page.evaluate("window.__noReload = true")  # a reload would wipe it: rows and bar must change in place
    badges = [page.locator(f'[data-vm-id="{u}"] [data-field=state]') for u in uuids]

    bulk(page, "start")
    expect_batch_done(page, "Start")
    for badge in badges:
        expect(badge).to_contain_text("Running", timeout=30_000)
    screenshot(page, "vm-bulk-started")

    bulk(page, "force-off")
    dialog = page.locator("#kv-confirm")
    expect(dialog).to_contain_text("Force off 2 VMs?")
    expect(dialog.locator("[data-confirm-ok]")).to_be_focused()
    dialog.locator("[data-confirm-ok]").click()
    expect_batch_done(page, "Force off")
    for badge in badges:
        expect(badge).to_contain_text("Shut off", timeout=30_000)
    assert page.evaluate("window.__noReload") is True
    page.close()

    assert [g.state() for g in two_off_guests] == ["shutoff", "shutoff"]
    for kind in ("vm.start", "vm.force-off"):
        ops = Operation.objects.filter(kind=kind, target_id__in=uuids)
        assert sorted(op.status for op in ops) == ["succeeded", "succeeded"]
        events = AuditEvent.objects.filter(operation__in=ops)
        assert sorted(e.outcome for e in events) == ["succeeded", "succeeded"]
