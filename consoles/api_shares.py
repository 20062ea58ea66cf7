"""/api/v1/vms/{uuid}/console/shares/: view-only console sharing with users and teams, for the VM's owner,
instructors of the owner's teams, and administrators."""

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
from teams.models import TeamMembership


class ConsoleShareSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    members = serializers.SerializerMethodField(help_text="How many people the team share reaches; null for a user.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ConsoleShare
        fields = ["user", "team", "members", "created_by", "created"]

    def get_members(self, share: ConsoleShare) -> int | None:
        if share.team_id is None:
            return None
        count = getattr(share, "member_count", None)
        return count if count is not None else TeamMembership.objects.filter(team_id=share.team_id).count()


@extend_schema(methods=["GET"], operation_id="vm_console_shares_list", responses=ConsoleShareSerializer(many=True))
@extend_schema(
    methods=["POST"],
    operation_id="vm_console_share_create",
    request=inline_serializer(
        "ConsoleShareCreate",
        {"user": serializers.CharField(required=False), "team": serializers.SlugField(required=False)},
    ),
    responses={
        201: ConsoleShareSerializer,
        400: OpenApiResponse(description="no such user or team, or a user who already has full access"),
        409: OpenApiResponse(description="already shared with that user or team"),
    },
    description="Share the VM's console view-only with a user, or with every member of a team (name one of "
    "`user` or `team`): they watch, their keyboard and mouse never reach it.",
)
@api_view(["GET", "POST"])
def share_collection(request: Request, vm_uuid: UUID) -> Response:
    actor = actor_from_api(request)
    if request.method == "POST":
        vm = shares.share_vm(actor=actor, uuid=vm_uuid, action="console.share")
        team = _field(request.data, "team")
        if team:
            share = shares.share_add_team(actor=actor, vm=vm, slug=team)
        else:
            share = shares.share_add(actor=actor, vm=vm, username=_field(request.data, "user"))
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


@extend_schema(
    operation_id="vm_console_team_share_delete",
    responses={204: None, 404: OpenApiResponse(description="not shared with that team")},
    description="Stop sharing with a team; members who can no longer watch are disconnected.",
)
@api_view(["DELETE"])
def team_share_item(request: Request, vm_uuid: UUID, slug: str) -> Response:
    actor = actor_from_api(request)
    vm = shares.share_vm(actor=actor, uuid=vm_uuid, action="console.unshare")
    shares.share_revoke_team(actor=actor, vm=vm, slug=slug)
    return Response(status=204)


def _field(data: Any, name: str) -> str:
    value = data.get(name) if hasattr(data, "get") else None
    return value if isinstance(value, str) else ""
