"""In Chromium: create a VM with the wizard on the lab, watch its progress, start it, see it run, shut it down."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from kvmweb.virt import volumes
from storage.models import StoragePool
from tests.e2e.conftest import pool_running, screenshot, watched_lab_host
from tests.e2e.test_hosts_e2e import log_in
from tests.factories import make_user
from tests.lab.guests import BOOT_DIR, POOL, Guest, remove_guest, unique_guest_name
from vms.models import VirtualMachine

pytestmark = pytest.mark.e2e


@pytest.fixture
def vm_name(lab_host) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = unique_guest_name("e2e-wizard")
    remove_guest(lab_host, name, delete_volume=False)
    yield name
    remove_guest(lab_host, name, delete_volume=False)
    for volume in volumes.host_volumes(lab_host.target):
        if volume.name.startswith(f"{name}-") and volume.path:
            volumes.delete_volume(lab_host.target, volume.path)


def test_wizard_creates_a_vm_that_starts_and_shuts_down_live(  # type: ignore[no-untyped-def]
    live_stack, transactional_db, browser, libvirt_host, lab_host, vm_name
):
    make_user("ada", admin=True)
    host = watched_lab_host(live_stack, libvirt_host, ready=pool_running, what="the lab's pools")

    base = live_stack["base"]
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, base, "ada")
    page.goto(f"{base}/vms/new/")
    page.fill("#f-name", vm_name)
    page.select_option("#f-host", str(host.pk))
    page.fill("#f-vcpus", "1")
    page.fill("#f-memory", "192")
    # This machine's /dev/kvm is a software stand-in that can't run guests: the lab uses TCG.
    page.select_option("#f-virt", "qemu")
    screenshot(page, "wizard-basics")
    page.click("[data-step-next]")

    page.check("input[name=source_type][value=kernel]")
    page.fill("#f-kernel", f"{BOOT_DIR}/vmlinuz")
    page.fill("#f-initrd", f"{BOOT_DIR}/initrd.gz")
    page.fill("#f-cmdline", f"console=tty0 console=ttyS0,115200 kvmweb.name={vm_name}")
    page.click("[data-step-next]")

    page.select_option("#f-pool", str(StoragePool.objects.get(host=host, name=POOL).pk))
    page.fill("#f-size", "0.0625")
    page.click("[data-step-next]")
    page.click("[data-step-next]")
    expect(page.locator("[data-sum=name]")).to_have_text(vm_name)
    screenshot(page, "wizard-review")
    page.click("[data-step-submit]")

    # The operation page: a live progress bar, then success, without a reload.
    expect(page.locator(".kv-progress-lg [data-field=progress]")).to_be_visible()
    expect(page.locator('[data-show-when="succeeded"]')).to_be_visible(timeout=120_000)
    screenshot(page, "wizard-created")
    vm = VirtualMachine.objects.get(name=vm_name, host=host)
    assert vm.owner is not None and vm.owner.username == "ada"

    page.goto(f"{base}/vms/{vm.uuid}/")
    badge = page.locator("h1 [data-field=state]")
    expect(badge).to_contain_text("Shut off")
    page.evaluate("window.__noReload = true")
    page.locator('[data-vm-action="start"] button[type=submit]').click()
    expect(badge).to_contain_text("Running", timeout=60_000)

    guest = Guest(lab_host, vm_name, str(vm.uuid), data_disk=False)
    guest.wait_for_agent(120)  # booted far enough to shut down cleanly
    page.locator('[data-vm-action="shutdown"] .kv-split-main').click()
    expect(badge).to_contain_text("Shut off", timeout=90_000)
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "wizard-vm-shut-off")
    page.close()
