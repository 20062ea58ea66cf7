"""In Chromium: the graphical console of a running lab guest, through the real console proxy.

The stack is the one `make run` starts (nginx, gunicorn, daphne, the console proxy, a worker, the
events watcher). The page asks for a fresh token, noVNC connects, and the guest's screen is drawn on
the canvas: we read its pixels. Keys typed on that canvas reach the guest, which writes them to its
serial port. Someone without access gets 404 from the console endpoints.
"""

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from rest_framework.authtoken.models import Token

from consoles.models import ConsoleSession
from hosts.messages import watcher_notify
from hosts.models import Host
from tests.e2e.conftest import screenshot
from tests.e2e.test_hosts_e2e import log_in
from tests.factories import make_user
from tests.lab.guests import Guest
from tests.stack import wait_until
from vms.models import VirtualMachine

pytestmark = pytest.mark.e2e

# How many pixels of the guest's screen are lit (any channel above 48): the boot text is, the
# background is black. Reading the canvas noVNC draws on, as the browser shows it.
LIT_PIXELS = """() => {
  const canvas = document.querySelector("[data-console] [data-console-screen] canvas");
  if (!canvas || !canvas.width || !canvas.height) return 0;
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] > 48 || data[i + 1] > 48 || data[i + 2] > 48) lit += 1;
  return lit;
}"""
# Enough lit pixels for a few lines of text; a blank or all-black screen has none.
MIN_LIT = 500


@pytest.fixture
def indexed_guest(live_stack, transactional_db, libvirt_host, running_tiny_guest) -> Iterator[Guest]:  # type: ignore[no-untyped-def]
    """The running tiny guest, as kvmweb's events process has indexed it (with its VNC socket in the XML)."""
    host = Host.objects.create(name="lab", uri=libvirt_host)
    watcher_notify(host.pk)  # as host_create does: the events process starts watching it
    wait_until(
        lambda: VirtualMachine.objects.filter(uuid=running_tiny_guest.uuid, state="running").exclude(xml="").exists(),
        timeout=30,
        what="the events process indexing the lab's running guest",
        log=live_stack["log"],
    )
    yield running_tiny_guest


def test_owner_sees_the_guest_screen_and_types_into_it(live_stack, browser, indexed_guest):  # type: ignore[no-untyped-def]
    guest = indexed_guest
    ada = make_user("ada", admin=True)
    base = live_stack["base"]
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, base, "ada")
    page.goto(f"{base}/vms/{guest.uuid}/console/")
    console = page.locator("[data-console]")
    expect(console).to_have_attribute("data-phase", "connected", timeout=30_000)
    # The first framebuffer update paints the guest's text console: not all black.
    page.wait_for_function(f"() => ({LIT_PIXELS})() >= {MIN_LIT}", timeout=30_000)
    assert page.evaluate(LIT_PIXELS) >= MIN_LIT
    expect(page.locator("[data-console-viewonly]")).to_be_hidden()
    assert "token" not in page.url
    screenshot(page, "console-connected")

    # The proxy recorded the session, for the audit: who, which VM, full control.
    wait_until(
        lambda: ConsoleSession.objects.filter(vm__uuid=guest.uuid, user=ada, ended__isnull=True).exists(),
        timeout=10,
        what="the console session record",
        log=live_stack["log"],
    )
    session = ConsoleSession.objects.get(vm__uuid=guest.uuid, user=ada, ended__isnull=True)
    assert (session.kind, session.view_only) == ("vnc", False)

    # Keys typed on the canvas go through the proxy to the guest's shell on tty0.
    # Unique, so the whole log since boot can be searched: marking the log here would hide the boot
    # marker from later tests that share this guest.
    marker = f"kvmweb-typed-{secrets.token_hex(4)}"
    page.locator("[data-console-screen] canvas").click()
    # As a person types on a US keyboard: ">" and "S" with Shift held down. (QEMU takes the keys'
    # scancodes, so Playwright's type(">"), which presses no Shift, would reach the guest as ".".)
    page.keyboard.type(f"echo {marker} ")
    page.keyboard.press("Shift+Period")
    page.keyboard.type(" /dev/tty")
    page.keyboard.press("Shift+KeyS")
    page.keyboard.type("0")
    page.keyboard.press("Enter")
    wait_until(
        lambda: marker in guest.serial_output(),
        timeout=20,
        what=f"{marker!r} on the guest's serial port",
    )
    screenshot(page, "console-typed")
    page.close()


def test_user_without_access_gets_404_from_the_console(live_stack, browser, indexed_guest):  # type: ignore[no-untyped-def]
    guest = indexed_guest
    bob = make_user("bob")
    base = live_stack["base"]
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    log_in(page, base, "bob")

    # The token endpoint, asked as the console page's script does (POST with the CSRF cookie).
    answer: dict[str, Any] = page.evaluate(
        """async (url) => {
          const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] || "";
          const headers = {"X-CSRFToken": csrf};
          const response = await fetch(url, {method: "POST", headers, credentials: "same-origin"});
          return {status: response.status, body: await response.text()};
        }""",
        f"/vms/{guest.uuid}/console/token/",
    )
    assert answer["status"] == 404
    assert json.loads(answer["body"]) == {"error": {"code": "not_found", "message": "No such VM.", "details": {}}}

    # The API, with bob's API token.
    key = Token.objects.create(user=bob).key
    response = page.request.post(
        f"{base}/api/v1/vms/{guest.uuid}/console/", headers={"Authorization": f"Token {key}"}, data={"view_only": True}
    )
    assert response.status == 404
    assert response.json()["error"]["code"] == "not_found"

    response = page.goto(f"{base}/vms/{guest.uuid}/console/")
    assert response is not None and response.status == 404
    assert not ConsoleSession.objects.filter(user=bob).exists()
    context.close()


def test_keys_typed_in_the_serial_console_run_in_the_guest(live_stack, browser, indexed_guest):  # type: ignore[no-untyped-def]
    guest = indexed_guest
    make_user("ada", admin=True)
    base = live_stack["base"]
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    log_in(page, base, "ada")
    page.goto(f"{base}/vms/{guest.uuid}/#console")
    status = page.locator("[data-serial-status]")
    expect(status).to_have_attribute("data-phase", "connected", timeout=30_000)
    expect(page.locator("[data-serial-role]")).to_contain_text("typing")
    terminal = page.locator("[data-serial-term]")
    terminal.click()
    marker = f"kvmweb-{secrets.randbelow(10_000)}"
    page.keyboard.type(f"echo {marker}-$((6*7))")
    page.keyboard.press("Enter")
    # The guest's shell expands the arithmetic: only a command that really ran prints this.
    expect(terminal).to_contain_text(f"{marker}-42", timeout=30_000)
    screenshot(page, "serial-console-typed")
    page.close()
