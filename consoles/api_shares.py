"""/api/v1/vms/{uuid}/console/shares/: view-only console sharing, for the VM's owner and administrators."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from consoles import shares
from consoles.models import ConsoleShare
from kvmweb.actors import actor_from_api


class ConsoleShareSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ConsoleShare
        fields = ["user", "created_by", "created"]


@extend_schema(methods=["GET"], operation_id="vm_console_shares_list", responses=ConsoleShareSerializer(many=True))
@extend_schema(
    methods=["POST"],
    operation_id="vm_console_share_create",
    request=inline_serializer("ConsoleShareCreate", {"user": serializers.CharField()}),
    responses={
        201: ConsoleShareSerializer,
        400: OpenApiResponse(description="no such user, or one who already has full access"),
        409: OpenApiResponse(description="already shared with that user"),
    },
    description="Share the VM's console view-only with a user: they watch, their keyboard and mouse never reach it.",
)
@api_view(["GET", "POST"])
def share_collection(request: Request, vm_uuid: UUID) -> Response:
    actor = actor_from_api(request)
    if request.method == "POST":
        vm = shares.share_vm(actor=actor, uuid=vm_uuid, action="console.share")
        share = shares.share_add(actor=actor, vm=vm, username=_username(request.data))
        return Response(ConsoleShareSerializer(share).data, status=201)
    vm = shares.share_vm(actor=actor, uuid=vm_uuid, action="console.shares")
    return Response(ConsoleShareSerializer(shares.shares_of(vm), many=True).data)


@extend_schema(
    operation_id="vm_console_share_delete",
    responses={204: None, 404: OpenApiResponse(description="not shared with that user")},
    description="Stop sharing; the user's live view-only sessions on this VM are disconnected.",
)
@api_view(["DELETE"])
def share_item(request: Request, vm_uuid: UUID, username: str) -> Response:
    actor = actor_from_api(request)
    vm = shares.share_vm(actor=actor, uuid=vm_uuid, action="console.unshare")
    shares.share_revoke(actor=actor, vm=vm, username=username)
    return Response(status=204)


def _username(data: Any) -> str:
    value = data.get("user") if hasattr(data, "get") else None
    return value if isinstance(value, str) else ""
