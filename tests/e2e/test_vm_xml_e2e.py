"""In Chromium: the VM's XML editor (review, a refusal marked at its line, a real apply) and its Logs tab.

Screenshots at laptop and phone width, light and dark, land in test-results/screenshots/.
"""

import re
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from kvmweb.virt import devices
from tests.e2e.conftest import screenshot, watched_lab_host
from tests.e2e.test_hosts_e2e import log_in
from tests.factories import make_user
from tests.lab.guests import Guest
from tests.lab.virsh import virsh
from vms.models import VirtualMachine

pytestmark = pytest.mark.e2e

SIZES = {"laptop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
def guest(running_tiny_guest, lab_host) -> Iterator[Guest]:  # type: ignore[no-untyped-def]
    before = virsh(lab_host.uri, "dumpxml", "--inactive", "--security-info", running_tiny_guest.uuid, timeout=30)
    yield running_tiny_guest
    devices.redefine_domain_xml(lab_host.target, running_tiny_guest.uuid, before)


def set_description(page, text: str) -> None:  # type: ignore[no-untyped-def]
    area = page.locator("[data-xml-text]")
    element = f"<description>{text}</description>"
    area.fill(re.sub(r"<description>.*?</description>", element, area.input_value(), count=1, flags=re.S))


def edit_text(page, find: str, replace: str) -> None:  # type: ignore[no-untyped-def]
    text = page.locator("[data-xml-text]")
    text.fill(text.input_value().replace(find, replace, 1))


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", ["laptop", "phone"])
def test_xml_editor_and_logs_in_the_browser(live_stack, transactional_db, browser, libvirt_host, guest, size, scheme):  # type: ignore[no-untyped-def]
    make_user("ada", admin=True)
    indexed = VirtualMachine.objects.filter(uuid=guest.uuid)
    watched_lab_host(live_stack, libvirt_host, ready=lambda host: indexed.exists(), what="the guest")
    base, tag = live_stack["base"], f"{size}-{scheme}"
    context = browser.new_context(viewport=SIZES[size], color_scheme=scheme)
    page = context.new_page()
    log_in(page, base, "ada")

    page.goto(f"{base}/vms/{guest.uuid}/#xml")
    expect(page.locator("#tab-xml a", has_text="Edit")).to_be_visible()
    screenshot(page, f"vm-xml-tab-{tag}")

    page.goto(f"{base}/vms/{guest.uuid}/#logs")
    expect(page.locator("[data-logs-body]")).to_be_visible(timeout=10_000)
    expect(page.locator("[data-log-text]").first).to_contain_text(f"guest={guest.name}")
    page.wait_for_function("getComputedStyle(document.querySelector('#tab-logs')).opacity === '1'")
    screenshot(page, f"vm-logs-tab-{tag}")

    page.goto(f"{base}/vms/{guest.uuid}/xml/")
    expect(page.locator("[data-xml-text]")).to_have_value(lambda_contains(guest.uuid), timeout=10_000)
    screenshot(page, f"vm-xml-editor-{tag}")

    # A change libvirt's schema refuses: the failure comes back next to its line.
    edit_text(page, "<vcpu", "<nonsense>1</nonsense>\n  <vcpu")
    # Whatever earlier tests left in the shared guest's description, this one is new.
    edited = f"edited in the browser {secrets.token_hex(4)}"
    set_description(page, edited)
    page.click("[data-xml-review-button]")
    expect(page.locator("section[data-xml-review]")).to_be_visible()
    expect(page.locator(".kv-diff-added").first).to_be_visible()
    screenshot(page, f"vm-xml-review-{tag}")
    page.click("[data-xml-apply] button[type=submit]")
    expect(page.locator("[data-xml-error]")).to_be_visible(timeout=60_000)
    expect(page.locator("[data-xml-error-title]")).to_have_text("Not applied: nothing was changed")
    expect(page.locator("[data-xml-mark]")).to_be_visible()
    expect(page.locator("[data-xml-callout]")).to_contain_text("nonsense")
    screenshot(page, f"vm-xml-refused-{tag}")
    assert "nonsense" not in virsh(libvirt_host, "dumpxml", "--inactive", guest.uuid, timeout=30)

    if size == "laptop" and scheme == "light":
        for close in page.locator("#toasts .btn-close").all():
            close.click()
        edit_text(page, "<nonsense>1</nonsense>\n  ", "")
        page.click("[data-xml-review-button]")
        expect(page.locator("section[data-xml-review]")).to_be_visible()
        expect(page.locator("[data-xml-apply] button[type=submit]")).to_be_enabled()
        page.click("[data-xml-apply] button[type=submit]")
        expect(page.locator("[data-xml-done]")).to_be_visible(timeout=60_000)
        bar = "document.querySelector('[data-xml-apply-pane] .progress-bar')"
        page.wait_for_function(f"{bar}.style.width === '100%' && {bar}.getAnimations().length === 0")
        screenshot(page, f"vm-xml-applied-{tag}")
        dumped = virsh(libvirt_host, "dumpxml", "--inactive", guest.uuid, timeout=30)
        assert f"<description>{edited}</description>" in dumped
    context.close()


def lambda_contains(uuid: str):  # type: ignore[no-untyped-def]
    return re.compile(re.escape(f"<uuid>{uuid}</uuid>"))
