"""In Chromium, on the lab: a volume created through the API (by someone else, in effect) appears on a pool page
that is already open, and goes again when deleted, without a reload: pushed as pool.state over the page's
WebSocket. Also screenshots of the storage list, the pool page and the host's Storage tab, with a saved VM state.

The stack is the one `make run` starts (nginx, gunicorn, daphne, a worker, the events watcher); the volumes
made here have a unique prefix and are deleted afterwards.
"""

import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect
from rest_framework.authtoken.models import Token

from hosts.messages import host_publish
from kvmweb.realtime.publish import publish_flush
from kvmweb.virt import volumes
from storage.models import StoragePool
from tests.e2e.conftest import pool_running, screenshot, watched_lab_host
from tests.e2e.test_hosts_e2e import log_in
from tests.factories import make_user, make_vm
from tests.lab.guests import POOL

pytestmark = pytest.mark.e2e


@pytest.fixture
def lab(live_stack, transactional_db, lab_host, libvirt_host) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The lab host as the events process indexed it, ada's API token, a unique volume prefix, and a VM row
    with a saved state (made after the host's first reconcile, so it stays for the screenshots)."""
    host = watched_lab_host(live_stack, libvirt_host, ready=pool_running, what="the lab's pools")
    ada = make_user("ada", admin=True)
    saved = make_vm(
        host, "parked", state="shutoff", state_reason="saved", has_managed_save=True, state_changed=timezone.now()
    )
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    yield {
        "host": host,
        "pool": StoragePool.objects.get(host=host, name=POOL),
        "token": Token.objects.create(user=ada).key,
        "prefix": prefix,
        "saved": saved,
    }
    for volume in volumes.host_volumes(lab_host.target):
        if volume.name.startswith(prefix) and volume.path:
            volumes.delete_volume(lab_host.target, volume.path)


@pytest.fixture
def page(browser, live_stack, lab) -> Iterator[Page]:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, live_stack["base"], "ada")
    yield page
    page.close()


def api(base: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read() or b"{}"))


def live(page: Page) -> None:
    """The page's WebSocket is open, and a marker shows whether the page is ever reloaded."""
    expect(page.locator("#ws-status")).to_have_attribute("data-state", "live", timeout=15_000)
    page.evaluate("window.kvmwebNotReloaded = true")


def test_a_volume_created_through_the_api_appears_on_an_open_pool_page(live_stack, lab, page) -> None:  # type: ignore[no-untyped-def]
    base, pool, name = live_stack["base"], lab["pool"], f"{lab['prefix']}-api.qcow2"
    page.goto(f"{base}/storage/pools/{pool.pk}/")
    live(page)
    row = page.locator(f'tr[data-volume-name="{name}"]')
    expect(row).to_have_count(0)

    body = {"pool": pool.pk, "name": name, "size": 16, "unit": "MiB", "format": "qcow2"}
    api(base, lab["token"], "POST", "/api/v1/volumes/", body)

    expect(row).to_be_visible(timeout=60_000)
    expect(row).to_contain_text("thin")
    assert page.evaluate("window.kvmwebNotReloaded") is True
    screenshot(page, "storage-live-pool-page")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing runs off the side
    screenshot(page, "storage-live-pool-page-phone")

    # The volume's own page, open in a second tab while the volume is deleted, says it is gone.
    volume_id = int((row.locator("a").first.get_attribute("href") or "").rstrip("/").rsplit("/", 1)[1])
    other = page.context.browser.new_page(viewport={"width": 1366, "height": 768})  # type: ignore[union-attr]
    log_in(other, base, "ada")
    other.goto(f"{base}/storage/volumes/{volume_id}/")
    live(other)
    api(base, lab["token"], "POST", f"/api/v1/volumes/{volume_id}/actions/delete/", {"confirm": name})
    expect(row).to_have_count(0, timeout=60_000)
    assert page.evaluate("window.kvmwebNotReloaded") is True
    expect(other.locator(".kv-alert-gone")).to_contain_text("This volume no longer exists", timeout=30_000)
    screenshot(other, "storage-live-volume-gone")
    other.close()


def test_storage_list_and_host_tab_show_the_saved_state_with_its_discard_button(live_stack, lab, page) -> None:  # type: ignore[no-untyped-def]
    base, saved = live_stack["base"], lab["saved"]
    for width, height, suffix in ((1366, 768, ""), (390, 844, "-phone")):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{base}/storage/")
        row = page.locator(f'tr[data-saved-vm="{saved.uuid}"]')
        expect(row).to_contain_text("parked")
        expect(row.get_by_role("button", name="Discard saved state")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing runs off the side
        screenshot(page, f"storage-live-list{suffix}")
        page.goto(f"{base}/hosts/{lab['host'].pk}/#storage")
        expect(page.locator("#tab-storage")).to_have_class(re.compile(r"\bshow\b"))
        expect(page.locator(f'#tab-storage tr[data-saved-vm="{saved.uuid}"]')).to_be_visible()
        page.wait_for_function("getComputedStyle(document.querySelector('#tab-storage')).opacity === '1'")
        screenshot(page, f"storage-live-host-tab{suffix}")


def reread(page: Page, host: Any) -> None:
    """Push the host's state, as its reconnect or a refresh does; the pool page re-reads itself whole."""
    page.evaluate("document.querySelector('[data-live-region=pool-page]').dataset.stale = '1'")
    host.last_seen = timezone.now()  # a socket is sent a state it has already sent only once
    host_publish(host)
    publish_flush()
    expect(page.locator("[data-live-region=pool-page]:not([data-stale])")).to_have_count(1)


def test_what_is_typed_into_the_new_volume_form_outlives_a_re_read_page(live_stack, lab, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{live_stack['base']}/storage/pools/{lab['pool'].pk}/")
    live(page)
    page.click('a[href="#new-volume"]')
    page.fill("#nv-name", f"{lab['prefix']}-half.img")
    page.select_option("#nv-format", "raw")
    reread(page, lab["host"])
    expect(page.locator("#new-volume")).to_be_visible()
    expect(page.locator('a[href="#new-volume"]')).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#nv-name")).to_have_value(f"{lab['prefix']}-half.img")
    expect(page.locator("#nv-format")).to_have_value("raw")

    # Once sent, the form is answered: the next re-read shows it fresh.
    page.fill("#nv-size", "4")
    page.select_option("#nv-unit", "MiB")
    page.click("#new-volume button[type=submit]")
    expect(page.locator("#toasts")).to_contain_text("queued")
    reread(page, lab["host"])
    expect(page.locator("#nv-name")).to_have_value("")
    assert page.evaluate("window.kvmwebNotReloaded") is True
    expect(page.locator(f'tr[data-volume-name="{lab["prefix"]}-half.img"]')).to_be_visible(timeout=30_000)
