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


@extend_schema(parameters=FILTERS, responses=VmSerializer(many=True))
@api_view(["GET"])
def vm_collection(request: Request) -> Response:
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
    data = request.data if hasattr(request.data, "get") else {}
    return {key: data.get(key) for key in ("mode", "timeout") if data.get(key) is not None}


def _uuid_list(value: Any) -> list[UUID]:
    if not isinstance(value, list) or not value or len(value) > MAX_BULK:
        message = f"Send vms: a list of 1 to {MAX_BULK} VM UUIDs."
        raise Invalid(message, details={"vms": message})
    try:
        return [UUID(str(item)) for item in value]
    except ValueError:
        raise Invalid("vms holds something that is not a UUID.", details={"vms": "Not a list of UUIDs."}) from None
