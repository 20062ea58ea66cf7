"""Templates and owners over the API: the same services as the pages (vms/catalog.py)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from kvmweb import access
from kvmweb.actors import actor_from_api
from kvmweb.errors import Invalid
from vms import actions, catalog, selectors
from vms.api.serializers import VmCatalogSerializer

_REFUSED = {
    400: OpenApiResponse(description="invalid"),
    403: OpenApiResponse(description="not allowed"),
    404: OpenApiResponse(description="no such VM"),
    409: OpenApiResponse(description="refused"),
}


@extend_schema(operation_id="vm_templates_list", responses=VmCatalogSerializer(many=True))
@api_view(["GET"])
def template_list(request: Request) -> Response:
    """Templates on the hosts the user may use: anyone who may create VMs there may start from one."""
    paginator = PageNumberPagination()
    page = paginator.paginate_queryset(catalog.visible_templates(request.user).order_by("name"), request)
    return paginator.get_paginated_response(VmCatalogSerializer(page, many=True).data)


@extend_schema(
    operation_id="vm_template_set",
    request=inline_serializer("VmTemplateSet", {"template": serializers.BooleanField()}),
    responses={200: VmCatalogSerializer, **_REFUSED},
    description="Mark a shut-off VM as a template (true), or unmark it (false). Owners and administrators.",
)
@api_view(["POST"])
def vm_template(request: Request, vm_uuid: UUID) -> Response:
    actor = actor_from_api(request)
    vm = actions.vm_for_action(actor=actor, uuid=vm_uuid)
    template = _field(request, "template", bool, "true or false")
    return Response(VmCatalogSerializer(catalog.vm_set_template(actor=actor, vm=vm, template=template)).data)


@extend_schema(
    operation_id="vm_owner_set",
    request=inline_serializer("VmOwnerSet", {"owner": serializers.CharField(allow_null=True)}),
    responses={200: VmCatalogSerializer, **_REFUSED},
    description="Give the VM to another active user (a username), or to nobody (null). Administrators only.",
)
@api_view(["POST"])
def vm_owner(request: Request, vm_uuid: UUID) -> Response:
    actor = actor_from_api(request)
    vm = selectors.vm_get(request.user, vm_uuid)
    access.authorize(actor, "vm.reassign", vm, target=vm.as_target())
    owner = catalog.owner_named(_field(request, "owner", (str, type(None)), "a username, or null for nobody") or "")
    return Response(VmCatalogSerializer(catalog.vm_reassign(actor=actor, vm=vm, owner=owner)).data)


def _field(request: Request, name: str, kind: type | tuple[type, ...], expected: str) -> Any:
    data = request.data if hasattr(request.data, "get") else {}
    if name not in data or not isinstance(data[name], kind):
        message = f"Send {name}: {expected}."
        raise Invalid(message, details={name: message})
    return data[name]
