"""Internal snapshots for real: API -> Redis -> a Celery worker -> the lab's libvirtd -> a tiny guest.

Reverting the running tiny guest to a snapshot with memory takes its uptime back (read through
qemu-ga). A shut-off guest of this module's own gets a tree s1 -> s2, s1 -> s3: the API and the VM
page show the parent links and which one is current; deleting "only the children" of s1 keeps s1,
deleting s1 "with its children" removes the lot. Every snapshot is removed afterwards.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from lxml import html

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.operations.models import Operation
from kvmweb.virt import snapshots as virt_snapshots
from tests.integration import test_volumes_service_lab as volume_service
from tests.integration.test_snapshots_lab import on_host
from tests.integration.test_volumes_service_lab import finish
from tests.lab.guests import Guest, ensure_guest, remove_guest, unique_guest_name
from tests.lab.hosts import LabHost
from tests.stack import wait_until
from vms.models import VirtualMachine

pytestmark = pytest.mark.integration

Tree = list[tuple[str, str, int, bool]]

# The lab host indexed in kvmweb, an admin's API client and a worker: test_volumes_service_lab.py's fixture.
setup = volume_service.setup


def drop_snapshots(guest: Guest) -> None:
    with contextlib.suppress(virt.VirtError):
        for record in virt_snapshots.list_snapshots(guest.host.target, guest.uuid):
            if record.parent is None:
                with contextlib.suppress(virt.NotFound):
                    virt_snapshots.delete_snapshot(guest.host.target, guest.uuid, record.name, children=True)


@pytest.fixture
def uptime_guest(running_tiny_guest: Guest) -> Iterator[Guest]:
    """The running tiny guest with its agent answering; its snapshots are deleted afterwards."""
    running_tiny_guest.wait_for_agent(60)
    yield running_tiny_guest
    drop_snapshots(running_tiny_guest)


@pytest.fixture(scope="module")
def tree_guest(lab_host: LabHost) -> Iterator[Guest]:
    """A shut-off tiny guest with a qcow2 disk: its snapshots hold disks only, and are quick to take."""
    name = unique_guest_name("snaptree")
    guest = ensure_guest(lab_host, name, start=False)
    yield guest
    drop_snapshots(guest)
    remove_guest(lab_host, name)


def indexed(setup: dict[str, Any], guest: Guest) -> VirtualMachine:
    host_reconcile(host=setup["host"], inventory=virt.get_inventory(setup["host"].virt_target()))
    return VirtualMachine.objects.get(uuid=guest.uuid)


def snap(setup: dict[str, Any], guest: Guest, path: str = "", **body: Any) -> Operation:
    """POST to the VM's snapshot API (create, or `<name>/actions/<action>/`) and wait for the operation."""
    response = setup["api"].post(f"/api/v1/vms/{guest.uuid}/snapshots/{path}", body, content_type="application/json")
    op = finish(setup, response, timeout=300)
    assert op.status == "succeeded", (op.error, op.error_detail, op.log)
    return op


def api_tree(setup: dict[str, Any], guest: Guest) -> Tree:
    body = setup["api"].get(f"/api/v1/vms/{guest.uuid}/snapshots/").json()
    return [(s["name"], s["parent"], s["depth"], s["current"]) for s in body["snapshots"]]


def page_tree(setup: dict[str, Any], guest: Guest) -> Tree:
    """The Snapshots tab of the VM page, as a browser receives it."""
    browser = Client()
    browser.force_login(setup["ada"])
    response = browser.get(f"/vms/{guest.uuid}/")
    assert response.status_code == 200
    rows = html.fromstring(response.content).xpath("//table[@id='snapshot-tree']/tbody/tr[@data-snapshot]")
    tree = []
    for row in rows:
        hidden = " ".join(row.xpath(".//span[contains(@class, 'visually-hidden')]/text()"))
        parent = hidden.removeprefix("child of ").removesuffix(":") if hidden.startswith("child of ") else ""
        indent = re.search(r"calc\((\d+) \*", row.xpath(".//td[1]/div/@style")[0])
        assert indent is not None
        depth = int(indent[1])
        tree.append((row.get("data-snapshot"), parent, depth, row.get("aria-current") == "true"))
    return tree


def test_reverting_to_a_snapshot_with_memory_takes_the_guests_uptime_back(setup, uptime_guest) -> None:
    guest = uptime_guest
    indexed(setup, guest)
    before = guest.uptime()
    op = snap(setup, guest, name="it-uptime", description="uptime check")
    assert op.result["memory"] is True
    after = guest.uptime()
    # Let the guest run on well past the snapshot, then go back to it.
    wait_until(lambda: guest.uptime() > after + 15, timeout=60, what="the guest's uptime to grow by 15 s")
    later = guest.uptime()

    snap(setup, guest, "it-uptime/actions/revert/")

    assert guest.state() == "running"
    guest.wait_for_agent(60)
    reverted = guest.uptime()
    # Back where the snapshot was taken (plus the moments since the revert), not on from `later`,
    # and not a fresh boot either.
    assert before <= reverted < later, (before, after, later, reverted)
    assert VirtualMachine.objects.get(uuid=guest.uuid).state == "running"


def test_a_snapshot_tree_shows_its_links_and_deletes_children_only_or_with_them(setup, tree_guest) -> None:
    guest = tree_guest
    indexed(setup, guest)
    snap(setup, guest, name="s1")
    snap(setup, guest, name="s2")
    snap(setup, guest, "s1/actions/revert/")
    snap(setup, guest, name="s3")

    expected = [("s1", "", 0, False), ("s2", "s1", 1, False), ("s3", "s1", 1, True)]
    assert api_tree(setup, guest) == expected
    assert page_tree(setup, guest) == expected
    assert {r.name: r.parent for r in virt_snapshots.list_snapshots(guest.host.target, guest.uuid)} == {
        "s1": None,
        "s2": "s1",
        "s3": "s1",
    }

    snap(setup, guest, "s1/actions/delete/", children="only")
    assert on_host(guest) == ["s1"]
    assert [name for name, *_ in api_tree(setup, guest)] == ["s1"]

    snap(setup, guest, name="s4")
    assert [(name, parent) for name, parent, *_ in api_tree(setup, guest)] == [("s1", ""), ("s4", "s1")]
    snap(setup, guest, "s1/actions/delete/", children="with")
    assert on_host(guest) == []
    assert api_tree(setup, guest) == [] and page_tree(setup, guest) == []
