"""/api/v1/teams/: teams and their members. Administrators and the team's members read; administrators change."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from kvmweb.actors import actor_from_api
from teams import selectors, services
from teams.models import Team, TeamMembership


class MemberSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = TeamMembership
        fields = ["user", "role", "created"]


class TeamSerializer(serializers.ModelSerializer):
    members = serializers.IntegerField(source="member_count", read_only=True)

    class Meta:
        model = Team
        fields = ["name", "slug", "description", "created", "members"]


class TeamDetailSerializer(TeamSerializer):
    memberships = serializers.SerializerMethodField()

    class Meta(TeamSerializer.Meta):
        fields = [*TeamSerializer.Meta.fields, "memberships"]

    def get_memberships(self, team: Team) -> list[dict[str, Any]]:
        return MemberSerializer(selectors.members_of(team), many=True).data


TEAM_WRITE = inline_serializer(
    "TeamWrite", {"name": serializers.CharField(), "description": serializers.CharField(required=False)}
)
MEMBER_WRITE = inline_serializer(
    "TeamMemberWrite",
    {"user": serializers.CharField(), "role": serializers.ChoiceField(TeamMembership.Role.choices, required=False)},
)


@extend_schema(methods=["GET"], operation_id="teams_list", responses=TeamSerializer(many=True))
@extend_schema(
    methods=["POST"],
    operation_id="team_create",
    request=TEAM_WRITE,
    responses={
        201: TeamDetailSerializer,
        400: OpenApiResponse(description="no name"),
        409: OpenApiResponse(description="name taken"),
    },
)
@api_view(["GET", "POST"])
def team_collection(request: Request) -> Response:
    if request.method == "POST":
        actor = actor_from_api(request)
        team = services.team_create(
            actor=actor, name=_field(request.data, "name"), description=_field(request.data, "description")
        )
        return Response(_detail(request, team.slug), status=201)
    return Response(TeamSerializer(selectors.team_list(request.user), many=True).data)


@extend_schema(methods=["GET"], operation_id="team_detail", responses=TeamDetailSerializer)
@extend_schema(methods=["PATCH"], operation_id="team_update", request=TEAM_WRITE, responses=TeamDetailSerializer)
@extend_schema(methods=["DELETE"], operation_id="team_delete", responses={204: None})
@api_view(["GET", "PATCH", "DELETE"])
def team_item(request: Request, slug: str) -> Response:
    if request.method == "GET":
        return Response(_detail(request, slug))
    actor = actor_from_api(request)
    team = services.team_for_change(actor=actor, slug=slug, action=f"team.{_VERBS[request.method]}")
    if request.method == "DELETE":
        services.team_delete(actor=actor, team=team)
        return Response(status=204)
    name = _field(request.data, "name") or team.name
    description = _field(request.data, "description") if "description" in request.data else team.description
    team = services.team_update(actor=actor, team=team, name=name, description=description)
    return Response(_detail(request, team.slug))


@extend_schema(methods=["GET"], operation_id="team_members_list", responses=MemberSerializer(many=True))
@extend_schema(
    methods=["POST"],
    operation_id="team_member_add",
    request=MEMBER_WRITE,
    responses={
        201: MemberSerializer,
        400: OpenApiResponse(description="no such user or role"),
        409: OpenApiResponse(description="already in the team"),
    },
)
@api_view(["GET", "POST"])
def member_collection(request: Request, slug: str) -> Response:
    if request.method == "GET":
        team = selectors.team_get(request.user, slug)
        return Response(MemberSerializer(selectors.members_of(team), many=True).data)
    actor = actor_from_api(request)
    team = services.team_for_change(actor=actor, slug=slug, action="team.member.add")
    role = _field(request.data, "role") or TeamMembership.Role.MEMBER
    membership = services.member_add(actor=actor, team=team, username=_field(request.data, "user"), role=role)
    return Response(MemberSerializer(membership).data, status=201)


@extend_schema(
    methods=["PATCH"],
    operation_id="team_member_role",
    request=inline_serializer("TeamMemberRole", {"role": serializers.ChoiceField(TeamMembership.Role.choices)}),
    responses=MemberSerializer,
)
@extend_schema(methods=["DELETE"], operation_id="team_member_remove", responses={204: None})
@api_view(["PATCH", "DELETE"])
def member_item(request: Request, slug: str, username: str) -> Response:
    actor = actor_from_api(request)
    action = "team.member.remove" if request.method == "DELETE" else "team.member.role"
    team = services.team_for_change(actor=actor, slug=slug, action=action)
    if request.method == "DELETE":
        services.member_remove(actor=actor, team=team, username=username)
        return Response(status=204)
    membership = services.member_set_role(actor=actor, team=team, username=username, role=_field(request.data, "role"))
    return Response(MemberSerializer(membership).data)


_VERBS = {"PATCH": "update", "DELETE": "delete"}


def _detail(request: Request, slug: str) -> dict[str, Any]:
    return TeamDetailSerializer(selectors.team_get(request.user, slug)).data


def _field(data: Any, name: str) -> str:
    value = data.get(name) if hasattr(data, "get") else None
    return value if isinstance(value, str) else ""
