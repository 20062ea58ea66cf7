"""The operations drawer's Force off: the operation message says what a failure suggests, and the drawer
carries the server's Force off form for drawer.js to fill in (tests/e2e/test_ops_drawer_e2e.py shows it live).

alice owns the VM; bob does not see it. Operations run on libvirt's test driver, as in test_vm_actions.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.template.loader import render_to_string
from django.test import Client, RequestFactory

from kvmweb import virt
from kvmweb.operations.models import Operation
from kvmweb.realtime import publish as publish_module
from tests.unit import test_vm_actions

lab = test_vm_actions.lab
domain = test_vm_actions.domain
act = test_vm_actions.act
FORM_TEMPLATE = 'action="/vms/00000000-0000-0000-0000-000000000000/actions/force-off/"'


@pytest.fixture
def pushed(monkeypatch) -> list[tuple[list[str], dict[str, Any]]]:  # type: ignore[no-untyped-def]
    sent: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(publish_module, "_send", lambda groups, payload, *_: sent.append((groups, payload)))
    return sent


@pytest.fixture
def timed_out(queued, domain, alice, monkeypatch, django_capture_on_commit_callbacks) -> Operation:  # type: ignore[no-untyped-def]
    """A shutdown whose guest ignores ACPI: the request is lost, and the domain keeps running."""
    with monkeypatch.context() as patch, django_capture_on_commit_callbacks(execute=True):
        patch.setattr(virt, "shutdown_domain", lambda target, uuid, mode: None)
        op = act(domain(), "shutdown", alice, timeout=1)
    assert (op.status, op.result) == ("failed", {"suggest": "force-off"})
    return op


@pytest.fixture
def refused(queued, domain, alice, django_capture_on_commit_callbacks) -> Operation:  # type: ignore[no-untyped-def]
    """A shutdown libvirt refuses at once (the test driver takes no shutdown flags): failed, nothing suggested."""
    with django_capture_on_commit_callbacks(execute=True):
        op = act(domain(), "shutdown", alice, mode="acpi")
    assert (op.status, op.result) == ("failed", {})
    return op


def _finished_message(pushed: list[tuple[list[str], dict[str, Any]]], op: Operation) -> tuple[list[str], Any]:
    # The fixtures commit only after the worker ran, so the request's own push (sent on commit) comes last.
    finished = [
        (g, p)
        for g, p in pushed
        if p["type"] == "operation" and p["operation"]["id"] == op.pk and p["operation"]["finished"]
    ]
    assert finished
    return finished[0]


def test_a_timed_out_shutdown_message_suggests_force_off_to_those_who_see_the_operation(pushed, timed_out, alice):  # type: ignore[no-untyped-def]
    groups, message = _finished_message(pushed, timed_out)

    assert groups == sorted(["admins", f"vm.{timed_out.target_id}", f"user.{alice.pk}"])
    assert message == {
        "type": "operation",
        "v": 1,
        "operation": {
            "id": timed_out.pk,
            "kind": "vm.shutdown",
            "kind_label": "Shut down VM",
            "target": {"type": "vm", "id": timed_out.target_id, "label": timed_out.target_label},
            "status": "failed",
            "progress": timed_out.progress,
            "message": timed_out.message,
            "error": timed_out.error,
            "suggest": "force-off",
            "created": timed_out.created.isoformat(),
            "started": timed_out.started.isoformat(),
            "finished": timed_out.finished.isoformat(),
        },
    }


def test_another_failure_suggests_nothing(pushed, refused):  # type: ignore[no-untyped-def]
    _groups, message = _finished_message(pushed, refused)

    assert message["operation"]["status"] == "failed" and message["operation"]["suggest"] is None


def test_the_drawer_carries_the_force_off_form_for_its_script_on_every_page(alice):  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(alice)

    html = client.get("/operations/").content.decode()

    drawer = html[html.index('id="ops-drawer"') :]
    template = drawer[drawer.index('<template id="ops-force-off">') : drawer.index("</template>")]
    assert FORM_TEMPLATE in template and 'name="csrfmiddlewaretoken"' in template
    assert 'data-confirm="Force off {vm}? This pulls the plug' in template
    assert html.count("/actions/force-off/") == 1  # only the inert <template>: alice has no operation


def test_the_force_off_partial_offers_it_for_a_timed_out_shutdown_only(timed_out, refused, alice):  # type: ignore[no-untyped-def]
    request = RequestFactory().get("/operations/")
    request.user = alice

    offered = render_to_string("partials/op_force_off.html", {"op": timed_out}, request=request)
    not_offered = render_to_string("partials/op_force_off.html", {"op": refused}, request=request)

    assert f'action="/vms/{timed_out.target_id}/actions/force-off/"' in offered
    assert f"Force off {timed_out.target_label}? This pulls the plug" in offered
    assert 'name="csrfmiddlewaretoken"' in offered
    assert not_offered.strip() == ""
