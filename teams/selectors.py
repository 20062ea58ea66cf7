"""Reads about teams, through the access check: administrators see every team, members their own."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet

from kvmweb import access
from kvmweb.errors import NotVisible
from teams.models import Team, TeamMembership


def team_list(user: Any) -> QuerySet[Team]:
    # A subquery, not the visibility filter's own join: that join would count only the asking member.
    visible = Team.objects.filter(pk__in=access.visible_teams(user).values("pk"))
    return visible.annotate(member_count=Count("memberships")).order_by("name")


def team_get(user: Any, slug: str) -> Team:
    team = team_list(user).filter(slug=slug).first()
    if team is None:
        raise NotVisible("No such team.")
    return team


def members_of(team: Team) -> list[TeamMembership]:
    """Instructors first ("instructor" sorts before "member"), then by name."""
    return list(team.memberships.select_related("user").order_by("role", "user__username"))


def member_candidates(team: Team) -> list[Any]:
    """Active users not in the team yet, for the add form's suggestions."""
    return list(
        get_user_model().objects.filter(is_active=True).exclude(team_memberships__team=team).order_by("username")
    )
