"""In Chromium: a guest shut down from virsh, outside kvmweb, turns its badge in the VM list to "Shut off" in place."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot, watched_lab_host
from tests.e2e.test_hosts_e2e import log_in
from tests.factories import make_user
from tests.lab.guests import Guest, ensure_guest, remove_guest, unique_guest_name
from vms.models import VirtualMachine

pytestmark = pytest.mark.e2e


@pytest.fixture
def booted_guest(lab_host) -> Iterator[Guest]:  # type: ignore[no-untyped-def]
    """A diskless tiny guest, booted far enough to answer the power button."""
    name = unique_guest_name("e2e-live")
    remove_guest(lab_host, name, delete_volume=False)
    guest = ensure_guest(lab_host, name, data_disk=False, start=True, wait=True, timeout=90)
    yield guest
    remove_guest(lab_host, name, delete_volume=False)


def test_vm_list_badge_follows_a_shutdown_done_in_virsh_without_reload(  # type: ignore[no-untyped-def]
    live_stack, transactional_db, browser, libvirt_host, booted_guest
):
    make_user("ada", admin=True)
    indexed = VirtualMachine.objects.filter(uuid=booted_guest.uuid, state="running")
    watched_lab_host(live_stack, libvirt_host, ready=lambda host: indexed.exists(), what="the lab's guests")

    base = live_stack["base"]
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, base, "ada")
    page.goto(f"{base}/vms/?search={booted_guest.name}")
    badge = page.locator(f'[data-vm-id="{booted_guest.uuid}"] [data-field=state]')
    expect(badge).to_contain_text("Running")
    # A marker that a reload would wipe: the badge must change in place.
    page.evaluate("window.__noReload = true")

    booted_guest.shutdown()  # virsh shutdown --mode acpi: the guest powers itself off
    expect(badge).to_contain_text("Shut off", timeout=60_000)
    assert page.evaluate("window.__noReload") is True
    assert badge.get_attribute("data-state") == "shutoff"
    screenshot(page, "vm-list-live-shutoff")
    page.close()
    row = VirtualMachine.objects.get(uuid=booted_guest.uuid)
    assert (row.state, row.state_reason) == ("shutoff", "shutdown")
