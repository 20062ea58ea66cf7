"""In Chromium: log in, add the lab host, and watch it become connected without reloading the page."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.e2e


def log_in(page, base: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/")


def test_admin_adds_a_host_and_sees_it_connect_live(live_stack, transactional_db, browser, libvirt_host):  # type: ignore[no-untyped-def]
    make_user("ada", admin=True)
    base = live_stack["base"]
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, base, "ada")
    screenshot(page, "dashboard-empty")

    page.goto(f"{base}/hosts/add/")
    page.fill("#id_name", "lab")
    page.fill("#id_uri", libvirt_host)
    page.get_by_role("button", name="Add host").click()
    expect(page).to_have_url(re.compile(rf"{base}/hosts/\d+/$"))
    # A marker that a reload would wipe: the state must change in place.
    page.evaluate("window.__noReload = true")
    state = page.locator("[data-host-id] [data-field=state]").first
    expect(state).to_contain_text("Connected", timeout=30_000)
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "host-detail-connected")

    page.goto(f"{base}/hosts/")
    expect(page.locator("table")).to_contain_text("lab")
    expect(page.locator("table")).to_contain_text("Connected")
    screenshot(page, "hosts-list")
    page.close()


def test_wrong_password_shows_an_error_and_no_session(live_stack, transactional_db, browser):  # type: ignore[no-untyped-def]
    make_user("ada", admin=True)
    base = live_stack["base"]
    page = browser.new_page()
    page.goto(f"{base}/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/login/"))
    expect(page.locator("body")).to_contain_text("correct username and password")
    page.close()
