"""In Chromium: a confirmation dialog answered before it has finished opening, as a quick user (or a
busy machine) makes it, still carries out what it asked about."""

import pytest
from playwright.sync_api import expect

from teams.models import Team
from tests.e2e.test_hosts_e2e import log_in
from tests.factories import make_user
from tests.stack import wait_until

pytestmark = pytest.mark.e2e

# Bootstrap counts a transition's delay as part of it: the dialog stays "opening" this long, and its
# buttons stand still (so Chromium clicks them at once) until the delay is over.
SLOW_OPENING = ".modal .modal-dialog { transition-delay: 2s !important; }"


def test_a_dialog_answered_while_it_still_opens_carries_the_action_out(live_stack, transactional_db, browser):  # type: ignore[no-untyped-def]
    make_user("ada", admin=True)
    Team.objects.create(name="Quick", slug="quick")
    base = live_stack["base"]
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, base, "ada")
    page.goto(f"{base}/teams/quick/")
    page.add_style_tag(content=SLOW_OPENING)

    page.get_by_role("button", name="Delete team").click()
    ok = page.locator("[data-confirm-ok]")
    expect(ok).to_have_text("Delete Quick")
    ok.click()

    wait_until(lambda: not Team.objects.filter(slug="quick").exists(), timeout=20, what="the team's deletion")
    expect(page).to_have_url(f"{base}/teams/")
    expect(page.locator("#toasts")).to_contain_text("Deleted team Quick")
    page.close()
