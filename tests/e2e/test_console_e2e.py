"""In Chromium: the graphical console of a running lab guest, through the real console proxy.

The stack is the one `make run` starts (nginx, gunicorn, daphne, the console proxy, a worker, the
events watcher). The page asks for a fresh token, noVNC connects, and the guest's screen is drawn on
the canvas: we read its pixels. Keys typed on that canvas reach the guest, which writes them to its
serial port. Someone without access gets 404 from the console endpoints. A user the console is shared
with watches, and what they type never reaches the guest. The toolbar's keys and paste type into the
guest too. The console of a shut-off VM offers its owner Start, and connects once it runs.
"""

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect
from rest_framework.authtoken.models import Token

from consoles.models import ConsoleSession, ConsoleShare
from tests.e2e.conftest import screenshot, watched_lab_host
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
    indexed = VirtualMachine.objects.filter(uuid=running_tiny_guest.uuid, state="running").exclude(xml="")
    watched_lab_host(live_stack, libvirt_host, ready=lambda host: indexed.exists(), what="the lab's running guest")
    # Booted, so its shell on tty1 takes keys: a test before may have started it again (at once when it had not).
    running_tiny_guest.wait_for_marker(60)
    yield running_tiny_guest


@pytest.fixture
def owned_guest(indexed_guest) -> Guest:  # type: ignore[no-untyped-def]
    """The indexed guest, owned by alice (not an administrator)."""
    VirtualMachine.objects.filter(uuid=indexed_guest.uuid).update(owner=make_user("alice"))
    return indexed_guest


def console_of(browser, base: str, user: Any, guest: Guest):  # type: ignore[no-untyped-def]
    """`user`'s console page of `guest`, loading; signed in by a session cookie (quicker than the sign-in page)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    name = settings.SESSION_COOKIE_NAME
    context.add_cookies([{"name": name, "value": client.cookies[name].value, "url": base}])
    page = context.new_page()
    page.goto(f"{base}/vms/{guest.uuid}/console/")
    return page


def showing_the_screen(page):  # type: ignore[no-untyped-def]
    expect(page.locator("[data-console]")).to_have_attribute("data-phase", "connected", timeout=30_000)
    # The first framebuffer update paints the guest's text console: not all black.
    page.wait_for_function(f"() => ({LIT_PIXELS})() >= {MIN_LIT}", timeout=30_000)
    return page


def type_echo_to_serial(page, marker: str) -> None:  # type: ignore[no-untyped-def]
    """On the canvas, type `echo <marker> > /dev/ttyS0` and Enter, as a person does on a US keyboard.

    ">" and "S" with Shift held down: QEMU takes the keys' scancodes, so Playwright's type(">"), which
    presses no Shift, would reach the guest as ".".
    """
    page.locator("[data-console-screen] canvas").click()
    page.keyboard.type(f"echo {marker} ")
    page.keyboard.press("Shift+Period")
    page.keyboard.type(" /dev/tty")
    page.keyboard.press("Shift+KeyS")
    page.keyboard.type("0")
    page.keyboard.press("Enter")


def paste_as_keys(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.locator("[data-console-paste-open]").click()
    page.locator("[data-console-paste-text]").fill(text)
    page.locator("[data-console-paste-send]").click()
    expect(page.locator("[data-console-paste]")).to_be_hidden()


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
    type_echo_to_serial(page, marker)
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


def test_a_viewers_keys_never_reach_the_guest_while_the_owners_do(live_stack, browser, owned_guest):  # type: ignore[no-untyped-def]
    guest = owned_guest
    vm = VirtualMachine.objects.get(uuid=guest.uuid)
    bob = make_user("bob")
    ConsoleShare.objects.create(vm=vm, user=bob, created_by=vm.owner)
    watching = console_of(browser, live_stack["base"], bob, guest)
    owning = console_of(browser, live_stack["base"], vm.owner, guest)

    showing_the_screen(watching)
    expect(watching.locator("[data-console-viewonly]")).to_be_visible()
    expect(watching.locator("[data-console-status-text]")).to_have_text("Watching")
    assert watching.locator("[data-console-input]").count() == 0
    viewer = f"kvmweb-viewer-{secrets.token_hex(4)}"
    type_echo_to_serial(watching, viewer)

    # The owner types after the viewer did: once the owner's line ran, the viewer's would have run first.
    showing_the_screen(owning)
    owner = f"kvmweb-owner-{secrets.token_hex(4)}"
    type_echo_to_serial(owning, owner)
    wait_until(lambda: owner in guest.serial_output(), timeout=20, what=f"{owner!r} on the guest's serial port")
    assert viewer not in guest.serial_output()

    sessions = ConsoleSession.objects.filter(vm=vm, ended__isnull=True)
    assert set(sessions.values_list("user__username", "view_only")) == {("bob", True), ("alice", False)}
    watching.context.close()
    owning.context.close()


def test_the_toolbars_keys_and_paste_type_into_the_guest(live_stack, browser, owned_guest):  # type: ignore[no-untyped-def]
    guest = owned_guest
    owner = VirtualMachine.objects.get(uuid=guest.uuid).owner
    page = showing_the_screen(console_of(browser, live_stack["base"], owner, guest))
    marker = f"kvmweb-toolbar-{secrets.token_hex(4)}"
    # Tab (from the Keys menu) makes the guest's shell complete the file name: only a Tab that arrived
    # turns "cmdlin" into "cmdline".
    paste_as_keys(page, f"echo {marker} /proc/self/cmdlin")
    page.locator("[data-console-input] summary").click()
    page.locator("[data-console-key='Tab']").click()
    paste_as_keys(page, " >/dev/ttyS0\n")
    wait_until(
        lambda: f"{marker} /proc/self/cmdline" in guest.serial_output(),
        timeout=20,
        what=f"{marker!r} with the completed file name on the guest's serial port",
    )
    page.context.close()


def test_the_owner_starts_a_shut_off_vm_from_its_console(live_stack, browser, owned_guest):  # type: ignore[no-untyped-def]
    # Last in this file: the guest boots again (indexed_guest waits for that), so the tests that type go first.
    guest = owned_guest
    guest.destroy()
    wait_until(
        lambda: VirtualMachine.objects.filter(uuid=guest.uuid, state="shutoff").exists(),
        timeout=20,
        what="the events process seeing the guest shut off",
        log=live_stack["log"],
    )
    guest.mark_log()  # so the next test's indexed_guest waits for this boot's marker, not the last one
    page = console_of(browser, live_stack["base"], VirtualMachine.objects.get(uuid=guest.uuid).owner, guest)
    console = page.locator("[data-console]")
    expect(console).to_have_attribute("data-phase", "off", timeout=15_000)
    off = page.locator("[data-console-overlay] [data-when='off']")
    expect(off).to_contain_text(f"{guest.name} is shut off")
    start = off.get_by_role("button", name=f"Start {guest.name}")
    expect(start).to_be_visible()
    screenshot(page, "console-shut-off")

    start.click()
    showing_the_screen(page)
    assert guest.is_running()
    page.context.close()
