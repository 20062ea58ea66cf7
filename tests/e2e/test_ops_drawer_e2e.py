"""In Chromium, on the lab: a shutdown that times out offers Force off in the open operations drawer, without a
reload, and the button forces the guest off; another failed operation offers nothing.

The failures are recorded through the operations service (operation_finish), which pushes them over Redis and
the page's WebSocket as the worker would; the Force off itself is a real operation run by the stack's worker.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from kvmweb.operations.models import Operation
from kvmweb.operations.services import operation_finish, operation_publish
from kvmweb.realtime.publish import publish_flush
from tests.e2e.conftest import screenshot, watched_lab_host
from tests.e2e.test_hosts_e2e import log_in
from tests.factories import make_user
from tests.lab.guests import Guest, ensure_guest, remove_guest, unique_guest_name
from tests.stack import wait_until
from vms.models import VirtualMachine

pytestmark = pytest.mark.e2e


@pytest.fixture
def running_guest(lab_host) -> Iterator[Guest]:  # type: ignore[no-untyped-def]
    name = unique_guest_name("e2e-drawer")
    remove_guest(lab_host, name, delete_volume=False)
    guest = ensure_guest(lab_host, name, data_disk=False, start=True, wait=False)
    yield guest
    remove_guest(lab_host, name, delete_volume=False)


def failed_shutdown(vm: VirtualMachine, user: Any, *, error: str, result: dict[str, str]) -> Operation:
    """A shutdown of `vm` as a worker leaves it: claimed, then finished as failed by the service."""
    now = timezone.now()
    op = Operation.objects.create(
        kind="vm.shutdown",
        target_type="vm",
        target_id=str(vm.uuid),
        target_label=vm.name,
        requested_by=user,
        status=Operation.Status.RUNNING,
        started=now,
        deadline=now + timedelta(minutes=5),
    )
    assert operation_finish(op, status=Operation.Status.FAILED, error=error, result=result)
    publish_flush()
    return op


def test_a_timed_out_shutdown_offers_force_off_in_the_open_drawer(  # type: ignore[no-untyped-def]
    live_stack, transactional_db, browser, libvirt_host, running_guest
):
    ada = make_user("ada", admin=True)
    indexed = VirtualMachine.objects.filter(uuid=running_guest.uuid, state="running")
    watched_lab_host(live_stack, libvirt_host, ready=lambda host: indexed.exists(), what="the lab's guests")
    vm = VirtualMachine.objects.get(uuid=running_guest.uuid)

    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, live_stack["base"], "ada")
    # The consumer joins its groups before it accepts: once live, nothing pushed is missed.
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live", timeout=30_000)
    page.click("#ops-indicator")
    expect(page.locator("#ops-drawer")).to_be_visible()
    page.evaluate("window.__noReload = true")  # a reload would wipe it: the drawer must change in place

    refused = failed_shutdown(vm, ada, error="A value was not accepted.", result={})
    timed_out = failed_shutdown(
        vm, ada, error=f"{vm.name} did not shut down within 1 s.", result={"suggest": "force-off"}
    )

    entry = page.locator(f'#ops-recent [data-operation-id="{timed_out.pk}"]')
    form = entry.locator("form")
    expect(form.locator("button")).to_have_text("Force off")
    expect(form).to_have_attribute("action", f"/vms/{vm.uuid}/actions/force-off/")
    expect(page.locator(f'#ops-recent [data-operation-id="{refused.pk}"]')).to_contain_text("A value was not accepted.")
    expect(page.locator(f'#ops-recent [data-operation-id="{refused.pk}"] form')).to_have_count(0)
    screenshot(page, "ops-drawer-force-off")

    form.locator("button").click()
    dialog = page.locator("#kv-confirm")
    expect(dialog).to_contain_text(f"Force off {vm.name}?")
    # The dialog focuses its button once shown: a click while it still fades in would be lost (Bootstrap's hide()).
    expect(dialog.locator("[data-confirm-ok]")).to_be_focused()
    dialog.locator("[data-confirm-ok]").click()

    # The POST (fetch, CSRF) started a real force off: the guest stops, and the drawer's offer goes with it.
    wait_until(
        lambda: running_guest.state() == "shutoff", timeout=60, what="the guest to be forced off", log=live_stack["log"]
    )
    forced = Operation.objects.get(kind="vm.force-off", target_id=str(vm.uuid))
    expect(page.locator(f'#ops-recent [data-operation-id="{forced.pk}"]')).to_have_attribute(
        "data-status", "succeeded", timeout=30_000
    )
    expect(form).to_have_count(0)
    # A push older than the outcome (the request's "pending", sent by another process) arrives late: it is dropped.
    stale = Operation.objects.get(pk=refused.pk)
    stale.status, stale.finished = Operation.Status.PENDING, None
    operation_publish(stale)
    marker = failed_shutdown(vm, ada, error="Pushed after the stale one.", result={})
    expect(page.locator(f'#ops-recent [data-operation-id="{marker.pk}"]')).to_have_count(1)
    expect(page.locator(f'#ops-active [data-operation-id="{refused.pk}"]')).to_have_count(0)
    expect(page.locator(f'#ops-recent [data-operation-id="{refused.pk}"]')).to_have_attribute("data-status", "failed")
    assert page.evaluate("window.__noReload") is True
    page.close()
