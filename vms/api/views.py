from typing import Any
from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from kvmweb.actors import actor_from_api
from kvmweb.errors import Invalid
from kvmweb.operations.api import OperationSerializer, operation_response
from vms import actions, selectors
from vms.actions import ACTIONS, MAX_SHUTDOWN_TIMEOUT, SHUTDOWN_MODES
from vms.api.serializers import VmDetailSerializer, VmSerializer
from vms.create import vm_create
from vms.xml_editor import vm_xml_read

MAX_BULK = 500

FILTERS = [
    OpenApiParameter("host", OpenApiTypes.INT),
    OpenApiParameter("state", OpenApiTypes.STR, description="libvirt state in lower case, or gone"),
    OpenApiParameter("owner", OpenApiTypes.STR, description="a username, or none for unowned VMs"),
    OpenApiParameter("search", OpenApiTypes.STR, description="name, UUID, host or owner"),
    OpenApiParameter(
        "sort", OpenApiTypes.STR, description="name, state, host, owner, vcpus, memory, changed; - for descending"
    ),
]


@extend_schema(methods=["GET"], parameters=FILTERS, responses=VmSerializer(many=True), operation_id="vms_list")
@extend_schema(
    methods=["POST"],
    operation_id="vms_create",
    request=OpenApiTypes.OBJECT,
    responses={202: OpenApiResponse(description='{"operation": {...}}'), 400: OpenApiResponse(description="invalid")},
    description=(
        "Create a VM: name, host (id or auto), vcpus, memory_mib, virt_type (auto|kvm|qemu), firmware (bios|uefi), "
        "source ({type: iso, iso: volume id} | {type: template, template: uuid, clone: linked|full} | "
        "{type: cloud, image: volume id, clone, cloud_init: {user, ssh_keys, hostname, user_data}} | {type: network} | "
        "{type: kernel, kernel, initrd, cmdline} for administrators), "
        "disks ([{pool, size_mib, format, allocation, bus}]), nics ([{network, model}]), "
        "graphics, serial, guest_agent, description, start."
    ),
)
@api_view(["GET", "POST"])
def vm_collection(request: Request) -> Response:
    if request.method == "POST":
        data = request.data if isinstance(request.data, dict) else {}
        return operation_response(vm_create(actor=actor_from_api(request), data=data))
    filters = selectors.parse_filters(request.query_params.dict())
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(selectors.vm_list(request.user, filters), request)
    return paginator.get_paginated_response(VmSerializer(page, many=True).data)


@extend_schema(responses=VmDetailSerializer)
@api_view(["GET"])
def vm_item(request: Request, vm_uuid: UUID) -> Response:
    return Response(VmDetailSerializer(selectors.vm_get(request.user, vm_uuid)).data)


@extend_schema(
    operation_id="vm_action",
    request=inline_serializer(
        "VmActionParams",
        {
            "mode": serializers.ChoiceField(choices=SHUTDOWN_MODES, required=False),
            "timeout": serializers.IntegerField(required=False, min_value=1, max_value=MAX_SHUTDOWN_TIMEOUT),
        },
    ),
    responses={202: OpenApiResponse(description='{"operation": {...}}'), 409: OpenApiResponse(description="refused")},
    description=f"Actions: {', '.join(ACTIONS)}. shutdown takes mode (auto|acpi|agent) and timeout; reboot takes mode.",
)
@api_view(["POST"])
def vm_action(request: Request, vm_uuid: UUID, action: str) -> Response:
    actor = actor_from_api(request)
    vm = actions.vm_for_action(actor=actor, uuid=vm_uuid)
    op = actions.vm_action(actor=actor, vm=vm, action=action, params=_params(request))
    return operation_response(op)


@extend_schema(
    operation_id="vms_bulk_action",
    request=inline_serializer(
        "VmBulkAction",
        {
            "vms": serializers.ListField(child=serializers.UUIDField()),
            "mode": serializers.ChoiceField(choices=SHUTDOWN_MODES, required=False),
            "timeout": serializers.IntegerField(required=False),
        },
    ),
    responses={202: OpenApiResponse(description='{"operations": [...], "refused": [{"vm", "message"}]}')},
)
@api_view(["POST"])
def vm_bulk_action(request: Request, action: str) -> Response:
    actor = actor_from_api(request)
    actions.action_spec(action)
    uuids = _uuid_list(request.data.get("vms") if hasattr(request.data, "get") else None)
    found, missing = selectors.vms_get_many(request.user, uuids)
    result = actions.vm_bulk_action(actor=actor, vms=found, action=action, params=_params(request))
    refused = [{"vm": str(uuid), "message": "No such VM."} for uuid in missing]
    refused += [{"vm": str(vm.uuid), "message": message} for vm, message in result.refused]
    body = {"operations": OperationSerializer(result.operations, many=True).data, "refused": refused}
    return Response(body, status=202)


def _params(request: Request) -> dict[str, Any]:
    """The action's parameters as sent; each action's own check refuses what it does not take."""
    data = request.data if hasattr(request.data, "get") else {}
    return {key: data.get(key) for key in data if key != "vms" and data.get(key) is not None}


def _uuid_list(value: Any) -> list[UUID]:
    if not isinstance(value, list) or not value or len(value) > MAX_BULK:
        message = f"Send vms: a list of 1 to {MAX_BULK} VM UUIDs."
        raise Invalid(message, details={"vms": message})
    try:
        return [UUID(str(item)) for item in value]
    except ValueError:
        raise Invalid("vms holds something that is not a UUID.", details={"vms": "Not a list of UUIDs."}) from None


@extend_schema(
    operation_id="vm_xml",
    parameters=[OpenApiParameter("inactive", OpenApiTypes.BOOL, description="1 for the persistent definition")],
    responses={200: inline_serializer("VmXml", {"xml": serializers.CharField()})},
    description=(
        "The domain XML as libvirt last reported it to kvmweb (no secrets), read from the database. "
        "Apply an edited one with the define-xml action."
    ),
)
@api_view(["GET"])
def vm_xml(request: Request, vm_uuid: UUID) -> Response:
    vm = selectors.vm_get(request.user, vm_uuid)
    inactive = request.query_params.get("inactive", "") in ("1", "true", "yes")
    return Response({"xml": vm_xml_read(vm=vm, inactive=inactive)})
