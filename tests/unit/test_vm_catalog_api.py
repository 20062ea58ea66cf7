"""Templates and owners over the REST API: the same services, refusals and audit as the pages.

alice owns the VM and is a member of the host, carol is a member who owns nothing, bob is not a
member, ada administers.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from kvmweb.audit.models import AuditEvent
from kvmweb.virt.xml import DiskSpec, DomainSpec, build_domain_xml
from tests.factories import make_user, make_vm
from vms.models import VirtualMachine

GUEST_UUID = "5f1c2f0e-6f43-4f55-9b0e-0d6f4ad1e001"


def api(user: Any) -> Client:
    if user is None:
        return Client()
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")


def post(user: Any, path: str, body: dict[str, Any]) -> Any:
    return api(user).post(path, body, content_type="application/json")


@pytest.fixture
def carol(host):  # type: ignore[no-untyped-def]
    user = make_user("carol")
    host.members.add(user)
    return user


@pytest.fixture
def guest(host, alice) -> VirtualMachine:  # type: ignore[no-untyped-def]
    """alice's shut-off VM with one disk image, so it may become a template."""
    disk = DiskSpec(source_file="/var/lib/libvirt/images/base.qcow2")
    spec = DomainSpec(name="base", uuid=GUEST_UUID, memory_mib=128, vcpus=1, disks=(disk,))
    return make_vm(host, "base", owner=alice, state="shutoff", xml=build_domain_xml(spec), uuid=GUEST_UUID)


def test_owner_marks_a_template_and_host_members_list_it(guest, alice, carol, bob):  # type: ignore[no-untyped-def]
    response = post(alice, f"/api/v1/vms/{guest.uuid}/template/", {"template": True})
    assert response.status_code == 200, response.content
    assert response.json()["is_template"] is True
    assert VirtualMachine.objects.get(pk=guest.pk).is_template
    assert AuditEvent.objects.filter(action="vm.template-on", outcome="succeeded", actor_name="alice").count() == 1
    listed = api(carol).get("/api/v1/vms/templates/").json()
    assert (listed["count"], [vm["name"] for vm in listed["results"]]) == (1, ["base"])
    assert listed["results"][0]["is_template"] is True and listed["results"][0]["owner"] == "alice"
    assert api(bob).get("/api/v1/vms/templates/").json()["count"] == 0  # not a member of the host


def test_owner_unmarks_a_template(guest, alice):  # type: ignore[no-untyped-def]
    VirtualMachine.objects.filter(pk=guest.pk).update(is_template=True)
    response = post(alice, f"/api/v1/vms/{guest.uuid}/template/", {"template": False})
    assert response.status_code == 200 and response.json()["is_template"] is False
    assert AuditEvent.objects.filter(action="vm.template-off", outcome="succeeded").count() == 1


def test_a_running_vm_cannot_become_a_template(guest, alice):  # type: ignore[no-untyped-def]
    VirtualMachine.objects.filter(pk=guest.pk).update(state="running")
    response = post(alice, f"/api/v1/vms/{guest.uuid}/template/", {"template": True})
    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "conflict",
            "message": "Cannot make base a template: it is running. Shut it down first.",
            "details": {},
        }
    }
    assert not VirtualMachine.objects.get(pk=guest.pk).is_template


@pytest.mark.parametrize("body", [{}, {"template": "on"}, {"template": None}])
def test_template_needs_a_boolean(guest, alice, body):  # type: ignore[no-untyped-def]
    response = post(alice, f"/api/v1/vms/{guest.uuid}/template/", body)
    assert response.status_code == 400
    message = "Send template: true or false."
    assert response.json() == {"error": {"code": "invalid", "message": message, "details": {"template": message}}}


def test_other_users_template_change_is_404_and_audited(guest, carol):  # type: ignore[no-untyped-def]
    response = post(carol, f"/api/v1/vms/{guest.uuid}/template/", {"template": True})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    event = AuditEvent.objects.get()
    assert (event.actor_name, event.action, event.outcome, event.target_id) == (
        "carol",
        "vm.act",
        "denied",
        str(guest.uuid),
    )


def test_admin_reassigns_the_owner_and_it_is_audited(guest, ada, carol):  # type: ignore[no-untyped-def]
    response = post(ada, f"/api/v1/vms/{guest.uuid}/owner/", {"owner": "carol"})
    assert response.status_code == 200, response.content
    assert response.json()["owner"] == "carol"
    assert VirtualMachine.objects.get(pk=guest.pk).owner == carol
    event = AuditEvent.objects.get(action="vm.reassign")
    assert (event.actor_name, event.outcome, event.message) == ("ada", "succeeded", "From alice to carol.")
    nobody = post(ada, f"/api/v1/vms/{guest.uuid}/owner/", {"owner": None})
    assert nobody.status_code == 200 and nobody.json()["owner"] is None


def test_reassign_refuses_the_same_owner_and_unknown_users(guest, ada):  # type: ignore[no-untyped-def]
    same = post(ada, f"/api/v1/vms/{guest.uuid}/owner/", {"owner": "alice"})
    assert same.status_code == 409 and same.json()["error"]["message"] == "base already belongs to alice."
    unknown = post(ada, f"/api/v1/vms/{guest.uuid}/owner/", {"owner": "mallory"})
    assert unknown.json() == {
        "error": {
            "code": "invalid",
            "message": "There is no active user called 'mallory'.",
            "details": {"owner": "No such user."},
        }
    }
    missing = post(ada, f"/api/v1/vms/{guest.uuid}/owner/", {})
    assert missing.status_code == 400 and set(missing.json()["error"]["details"]) == {"owner"}


def test_only_administrators_reassign(guest, alice, carol):  # type: ignore[no-untyped-def]
    owner = post(alice, f"/api/v1/vms/{guest.uuid}/owner/", {"owner": "carol"})
    assert owner.status_code == 403
    assert owner.json()["error"] == {
        "code": "permission_denied",
        "message": "Only administrators can do that.",
        "details": {},
    }
    assert post(carol, f"/api/v1/vms/{guest.uuid}/owner/", {"owner": "carol"}).status_code == 404
    assert post(None, f"/api/v1/vms/{guest.uuid}/owner/", {"owner": "carol"}).status_code == 401
    assert VirtualMachine.objects.get(pk=guest.pk).owner == alice
    denied = AuditEvent.objects.get(outcome="denied", actor_name="alice")
    assert denied.action == "vm.reassign"


def test_the_schema_describes_the_catalog_endpoints(ada):  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(ada)
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert paths["/api/v1/vms/templates/"]["get"]["operationId"] == "vm_templates_list"
    assert paths["/api/v1/vms/{vm_uuid}/template/"]["post"]["operationId"] == "vm_template_set"
    assert paths["/api/v1/vms/{vm_uuid}/owner/"]["post"]["operationId"] == "vm_owner_set"
