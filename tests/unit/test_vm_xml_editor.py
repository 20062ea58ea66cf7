"""The XML editor: the read endpoint, the checks, the review diff, and define-xml on libvirt's test driver.

alice owns the VM, ada administers, bob is another user, and anonymous visitors are signed out.
Writing raw XML is for administrators only: it can hand a guest any host device. The VMs are real
domains of the test driver (reconciled into rows), so "unchanged" is checked in libvirt itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils.html import escape
from rest_framework.authtoken.models import Token

from hosts.inventory import host_reconcile
from kvmweb import virt
from kvmweb.actors import Actor
from kvmweb.errors import Invalid
from kvmweb.operations.models import Operation
from kvmweb.virt.xml import DomainSpec, build_domain_xml
from tests.factories import make_host
from tests.runs import run
from vms import xml_editor
from vms.actions import ACTIONS, vm_action
from vms.models import VirtualMachine

TEST_URI = "test:///default"
TARGET = virt.HostTarget(TEST_URI)
MakeDomain = Callable[..., VirtualMachine]

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE domain [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<domain type='test'><name>&lol3;</name></domain>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE domain [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<domain type='test'><name>&secret;</name></domain>
"""
ENTITY_REFUSAL = (
    "The XML was refused: it declares a DTD or entities (<!DOCTYPE ...> or <!ENTITY ...>), which kvmweb never "
    "expands or accepts. Remove them; libvirt's definitions never need them."
)


@pytest.fixture
def lab(alice):  # type: ignore[no-untyped-def]
    return make_host("testhost", uri=TEST_URI, members=(alice,))


@pytest.fixture
def domain(lab, alice) -> Iterator[MakeDomain]:  # type: ignore[no-untyped-def]
    created: list[str] = []

    def make(*, running: bool = False, owner: Any = alice) -> VirtualMachine:
        spec = DomainSpec(name=f"xml-{uuid.uuid4().hex[:10]}", uuid=str(uuid.uuid4()), memory_mib=128, vcpus=1)
        summary = virt.define_domain(TARGET, build_domain_xml(spec))
        created.append(summary.uuid)
        if running:
            virt.start_domain(TARGET, summary.uuid)
        host_reconcile(host=lab, inventory=virt.get_inventory(TARGET))
        vm = VirtualMachine.objects.select_related("host").get(uuid=summary.uuid)
        vm.owner = owner
        vm.save(update_fields=["owner"])
        return vm

    yield make
    for domain_uuid in created:
        try:
            if virt.domain_state(TARGET, domain_uuid).state != "shutoff":
                virt.destroy_domain(TARGET, domain_uuid)
            virt.undefine_domain(TARGET, domain_uuid)
        except virt.NotFound:
            pass
    virt.close_all()


def definition(vm: VirtualMachine) -> str:
    return virt.get_domain_xml(TARGET, str(vm.uuid), inactive=True)


def with_description(xml: str, text: str) -> str:
    return xml.replace("</uuid>", f"</uuid>\n  <description>{text}</description>", 1)


def page_client(user: Any) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def api_client(user: Any) -> Client:
    if user is None:
        return Client()
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")


def line_of(xml: str, needle: str) -> int:
    return next(number for number, line in enumerate(xml.splitlines(), start=1) if needle in line)


# --- the action and its check ----------------------------------------------------------------------------------


def test_define_xml_is_in_the_action_table_for_any_state() -> None:
    spec = ACTIONS["define-xml"]
    assert (spec.kind, spec.group, spec.label) == ("vm.define-xml", "xml", "Apply XML")
    assert spec.check is xml_editor.check_define_xml
    assert {"running", "shutoff", "paused", "crashed"} <= spec.states and "gone" not in spec.states


def test_entity_expansion_is_refused_with_a_clear_message(domain) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    for payload in (BILLION_LAUGHS, EXTERNAL_ENTITY):
        with pytest.raises(Invalid) as refused:
            xml_editor.xml_check(vm=vm, xml=payload)
        assert refused.value.message == ENTITY_REFUSAL
        assert refused.value.details == {"xml": ENTITY_REFUSAL}


def test_another_vms_uuid_is_refused_at_its_line(domain) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    other = str(uuid.uuid4())
    xml = definition(vm).replace(str(vm.uuid), other)
    with pytest.raises(Invalid) as refused:
        xml_editor.xml_check(vm=vm, xml=xml)
    message = f"The <uuid> must stay {vm.uuid}: another UUID would define a different VM."
    assert refused.value.details == {"xml": message, "line": line_of(xml, "<uuid>")}


@pytest.mark.parametrize(
    ("edit", "message", "needle"),
    [
        (
            lambda xml, vm: xml.replace(f"<name>{vm.name}</name>", "<name>renamed</name>"),
            "The <name> must stay",
            "<name>",
        ),
        (lambda xml, vm: xml.replace("</devices>", "</devices"), "The XML is not well formed at line", None),
        (lambda xml, vm: "<network><name>x</name></network>", "Expected a <domain> definition, got <network>.", None),
        (lambda xml, vm: re.sub(r"\s*<uuid>.*</uuid>", "", xml), "Keep the <uuid> element", None),
        (lambda xml, vm: "  ", "Send the VM's domain XML: the definition is empty.", None),
    ],
)
def test_the_check_refuses_what_libvirt_must_not_see(domain, edit, message, needle) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    xml = edit(definition(vm), vm)
    with pytest.raises(Invalid) as refused:
        xml_editor.xml_check(vm=vm, xml=xml)
    assert refused.value.message.startswith(message)
    if needle:
        assert refused.value.details["line"] == line_of(xml, needle)


def test_more_than_one_mib_is_refused(domain) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    xml = with_description(definition(vm), "x" * (1024 * 1024))
    with pytest.raises(Invalid, match=r"at most 1 MiB \(1,048,576 bytes\)"):
        xml_editor.xml_check(vm=vm, xml=xml)


def test_define_xml_takes_only_xml(queued, domain, ada) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    with pytest.raises(Invalid, match=re.escape("Apply XML takes no parameter mode; it accepts: xml.")):
        vm_action(
            actor=Actor(user=ada, ip="192.0.2.9"),
            vm=vm,
            action="define-xml",
            params={"xml": definition(vm), "mode": "x"},
        )


# --- applying on the test driver ---------------------------------------------------------------------------------


@pytest.mark.parametrize("running", [False, True])
def test_a_valid_change_redefines_the_vm_and_refreshes_its_row(queued, domain, ada, running, no_libvirt) -> None:  # type: ignore[no-untyped-def]
    vm = domain(running=running)
    xml = with_description(definition(vm), "Edited through kvmweb")
    op = run(vm_action(actor=Actor(user=ada, ip="192.0.2.9"), vm=vm, action="define-xml", params={"xml": xml}))

    assert (op.kind, op.status, op.error) == ("vm.define-xml", "succeeded", "")
    assert "<description>Edited through kvmweb</description>" in definition(vm)
    # The row follows what libvirt reports: the running guest's own XML keeps its old description until it reboots.
    row = VirtualMachine.objects.get(pk=vm.pk)
    assert row.description == ("" if running else "Edited through kvmweb")
    assert (row.xml_inactive or row.xml) == definition(vm) and row.version > vm.version
    note = "keeps its current configuration" if running else "takes effect when the VM next starts"
    assert note in op.result["note"]
    # So the editor, loading again, shows the new definition without asking the host.
    with no_libvirt():
        read = api_client(ada).get(f"/api/v1/vms/{vm.uuid}/xml/?inactive=1")
    assert read.json() == {"xml": definition(vm)}


def test_a_refused_define_changes_nothing_and_reports_the_line(queued, domain, ada) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    before = definition(vm)
    xml = before.replace("<memory", "<bogus>1</bogus>\n  <memory", 1)
    op = run(vm_action(actor=Actor(user=ada, ip="192.0.2.9"), vm=vm, action="define-xml", params={"xml": xml}))

    assert op.status == "failed"
    line = line_of(xml, "<bogus>")
    assert op.error.endswith(f"(line {line})")
    assert op.error.startswith("The definition does not match libvirt's schema.")
    assert xml_editor.error_line_of(op.error) == line
    assert "Element domain has extra content: bogus" in op.error_detail
    assert definition(vm) == before


# --- the read endpoint -------------------------------------------------------------------------------------------


def test_owner_reads_the_persistent_and_the_live_definition_from_the_database(domain, alice, no_libvirt) -> None:  # type: ignore[no-untyped-def]
    vm = domain(running=True)
    with no_libvirt():
        persistent = api_client(alice).get(f"/api/v1/vms/{vm.uuid}/xml/?inactive=1")
        live = api_client(alice).get(f"/api/v1/vms/{vm.uuid}/xml/")
    assert (persistent.status_code, live.status_code) == (200, 200)
    assert persistent.json() == {"xml": definition(vm)}
    assert live.json() == {"xml": virt.get_domain_xml(TARGET, str(vm.uuid))} != persistent.json()


def test_a_shut_off_vms_definition_is_its_live_xml(domain, alice, no_libvirt) -> None:  # type: ignore[no-untyped-def]
    vm = domain(running=False)
    assert vm.xml_inactive == ""  # stored once
    with no_libvirt():
        response = api_client(alice).get(f"/api/v1/vms/{vm.uuid}/xml/?inactive=1")
    assert response.json() == {"xml": definition(vm)}


def test_other_user_and_anonymous_cannot_read_the_xml(domain, bob) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    response = api_client(bob).get(f"/api/v1/vms/{vm.uuid}/xml/?inactive=1")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    anonymous = api_client(None).get(f"/api/v1/vms/{vm.uuid}/xml/?inactive=1")
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "not_authenticated")


def test_a_vm_gone_from_its_host_answers_404_with_the_reason(domain, alice, lab, no_libvirt) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    virt.undefine_domain(TARGET, str(vm.uuid))
    host_reconcile(host=lab, inventory=virt.get_inventory(TARGET))
    with no_libvirt():
        response = api_client(alice).get(f"/api/v1/vms/{vm.uuid}/xml/?inactive=1")
    assert response.status_code == 404
    message = f"The virtual machine was not found: {vm.name} is no longer on {lab.name}."
    assert response.json() == {"error": {"code": "not_found", "message": message, "details": {}}}


# --- the apply endpoint ------------------------------------------------------------------------------------------


def test_api_apply_answers_202_with_the_operation(queued, domain, ada) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    xml = with_description(definition(vm), "via the API")
    response = api_client(ada).post(
        f"/api/v1/vms/{vm.uuid}/actions/define-xml/", {"xml": xml}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    op = Operation.objects.get(pk=response.json()["operation"]["id"])
    assert (op.kind, op.params) == ("vm.define-xml", {"xml": xml})


def test_api_apply_refusal_is_400_with_the_line(queued, domain, ada) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    xml = definition(vm).replace(str(vm.uuid), str(uuid.uuid4()))
    response = api_client(ada).post(
        f"/api/v1/vms/{vm.uuid}/actions/define-xml/", {"xml": xml}, content_type="application/json"
    )
    message = f"The <uuid> must stay {vm.uuid}: another UUID would define a different VM."
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "invalid", "message": message, "details": {"xml": message, "line": line_of(xml, "<uuid>")}}
    }
    entities = api_client(ada).post(
        f"/api/v1/vms/{vm.uuid}/actions/define-xml/", {"xml": BILLION_LAUGHS}, content_type="application/json"
    )
    assert (entities.status_code, entities.json()["error"]["message"]) == (400, ENTITY_REFUSAL)
    assert not Operation.objects.exists()


def test_api_apply_other_user_404_anonymous_401(queued, domain, bob) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    body = {"xml": definition(vm)}
    url = f"/api/v1/vms/{vm.uuid}/actions/define-xml/"
    assert api_client(bob).post(url, body, content_type="application/json").status_code == 404
    assert api_client(None).post(url, body, content_type="application/json").status_code == 401
    assert not Operation.objects.exists()


def test_page_apply_without_script_queues_and_redirects(queued, domain, ada) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    xml = with_description(definition(vm), "no script")
    response = page_client(ada).post(
        f"/vms/{vm.uuid}/actions/define-xml/", {"xml": xml, "next": f"/vms/{vm.uuid}/#operations"}
    )
    assert (response.status_code, response["Location"]) == (302, f"/vms/{vm.uuid}/#operations")
    assert Operation.objects.get().params == {"xml": xml}


# --- the pages ---------------------------------------------------------------------------------------------------


def test_an_administrator_sees_the_edit_button_and_the_editor(domain, ada, no_libvirt) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    client = page_client(ada)
    with no_libvirt():
        detail = client.get(f"/vms/{vm.uuid}/").content.decode()
        editor = client.get(f"/vms/{vm.uuid}/xml/")
    assert f'href="/vms/{vm.uuid}/xml/"' in detail
    assert editor.status_code == 200
    body = editor.content.decode()
    assert f'data-source-url="/api/v1/vms/{vm.uuid}/xml/?inactive=1"' in body
    assert f'data-apply-url="/api/v1/vms/{vm.uuid}/actions/define-xml/"' in body


def test_a_user_who_may_not_act_gets_no_edit_button_and_403(domain, alice, bob, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from kvmweb import access

    vm = domain(owner=bob)
    monkeypatch.setattr(access, "can_see", lambda user, obj: True)
    monkeypatch.setattr(access, "visible_vms", lambda user: VirtualMachine.objects.all())
    client = page_client(alice)
    assert f"/vms/{vm.uuid}/xml/" not in client.get(f"/vms/{vm.uuid}/").content.decode()
    assert client.get(f"/vms/{vm.uuid}/xml/").status_code == 403
    assert client.post(f"/vms/{vm.uuid}/xml/review/", {"xml": definition(vm)}).status_code == 403


def test_other_user_gets_404_and_anonymous_goes_to_sign_in(domain, bob) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    for url, method in ((f"/vms/{vm.uuid}/xml/", "get"), (f"/vms/{vm.uuid}/xml/review/", "post")):
        assert getattr(page_client(bob), method)(url, {"xml": "<domain/>"}).status_code == 404
        anonymous = getattr(page_client(None), method)(url, {"xml": "<domain/>"})
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")


def test_review_shows_a_side_by_side_diff_escaped(domain, ada, no_libvirt) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    original = definition(vm)
    xml = with_description(original, "a &lt;script&gt; tag").replace(
        "<vcpu placement='static'>1", "<vcpu placement='static'>2"
    )
    with no_libvirt():
        response = page_client(ada).post(f"/vms/{vm.uuid}/xml/review/", {"xml": xml, "original": original})
    assert response.status_code == 200
    body = response.content.decode()
    assert "1 changed" in body and "1 added" in body and "0 removed" in body
    assert 'class="kv-diff-added"' in body and 'class="kv-diff-changed"' in body
    assert "&lt;description&gt;a &amp;lt;script&amp;gt; tag&lt;/description&gt;" in body
    assert "<ins>2</ins>" in body and "<del>1</del>" in body
    # Apply carries the edited XML; Back to editing carries both texts.
    assert body.count(f'value="{escape(xml)}"') == 2
    assert f'action="/vms/{vm.uuid}/actions/define-xml/"' in body


def test_review_over_fetch_answers_the_partial_or_the_refusal_as_json(domain, ada) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    original = definition(vm)
    client = page_client(ada)
    url = f"/vms/{vm.uuid}/xml/review/"
    partial = client.post(url, {"xml": original, "original": original}, HTTP_X_REQUESTED_WITH="fetch")
    assert partial.status_code == 200
    body = partial.content.decode()
    assert "<html" not in body and "No changes" in body and "disabled" in body
    refused = client.post(url, {"xml": BILLION_LAUGHS, "original": original}, HTTP_X_REQUESTED_WITH="fetch")
    assert refused.status_code == 400
    assert refused.json() == {
        "error": {"code": "invalid", "message": ENTITY_REFUSAL, "details": {"xml": ENTITY_REFUSAL}}
    }


def test_review_refusal_without_script_keeps_the_text_and_marks_the_line(domain, ada) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    xml = definition(vm).replace(str(vm.uuid), str(uuid.uuid4()))
    response = page_client(ada).post(f"/vms/{vm.uuid}/xml/review/", {"xml": xml, "original": ""})
    assert response.status_code == 400
    body = response.content.decode()
    assert f'data-error-line="{line_of(xml, "<uuid>")}"' in body
    assert escape(xml) in body
    assert escape(f"The <uuid> must stay {vm.uuid}") in body


def test_back_to_editing_keeps_the_text(domain, ada) -> None:  # type: ignore[no-untyped-def]
    vm = domain()
    xml = with_description(definition(vm), "kept")
    response = page_client(ada).post(f"/vms/{vm.uuid}/xml/", {"xml": xml, "original": "old"})
    assert response.status_code == 200
    assert f"{escape(xml)}</textarea>" in response.content.decode()


# --- the diff ----------------------------------------------------------------------------------------------------


def test_diff_rows_pair_changes_and_fold_long_unchanged_runs() -> None:
    old = "\n".join(f"line {n}" for n in range(1, 21))
    new = old.replace("line 2\n", "line two\n").replace("line 20", "line 20\nline 21")
    diff = xml_editor.xml_diff(old, new, context=1)
    kinds = [(row.kind, row.old_number, row.new_number) for row in diff.rows]
    assert kinds == [
        ("equal", 1, 1),
        ("changed", 2, 2),
        ("equal", 3, 3),
        ("skip", None, None),
        ("equal", 20, 20),
        ("added", None, 21),
    ]
    assert diff.rows[3].skipped == 16
    assert diff.rows[1].new_parts == (("line ", False), ("two", True))
    assert (diff.added, diff.removed, diff.changed, diff.has_changes) == (1, 0, 1, True)
    assert xml_editor.xml_diff(old, old).has_changes is False


def test_the_owner_may_not_apply_or_open_the_editor(queued, domain, alice) -> None:  # type: ignore[no-untyped-def]
    from kvmweb.audit.models import AuditEvent
    from kvmweb.errors import Forbidden

    vm = domain()
    before = definition(vm)
    with pytest.raises(Forbidden):
        vm_action(actor=Actor(user=alice, ip="192.0.2.1"), vm=vm, action="define-xml", params={"xml": before})
    assert AuditEvent.objects.filter(action="vm.xml", outcome="denied").count() == 1
    assert page_client(alice).get(f"/vms/{vm.uuid}/xml/").status_code == 403
    page = page_client(alice).get(f"/vms/{vm.uuid}/")
    assert f"/vms/{vm.uuid}/xml/" not in page.content.decode()
    assert queued == [] and definition(vm) == before
