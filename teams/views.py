"""Team pages: the list and one team with its members. Administrators change them; members only look."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from consoles import shares
from kvmweb import access
from kvmweb.actors import actor_from_request
from kvmweb.ui import refusals_as_pages
from teams import selectors, services
from teams.models import TeamMembership


@login_required
@refusals_as_pages
def team_list(request: HttpRequest) -> HttpResponse:
    context = {
        "teams": selectors.team_list(request.user),
        "can_manage": access.is_admin(request.user),
        "nav_section": "teams",
    }
    return render(request, "teams/list.html", context)


@login_required
@refusals_as_pages
def team_detail(request: HttpRequest, slug: str) -> HttpResponse:
    team = selectors.team_get(request.user, slug)
    can_manage = access.is_admin(request.user)
    context = {
        "team": team,
        "members": selectors.members_of(team),
        "candidates": selectors.member_candidates(team) if can_manage else [],
        "roles": TeamMembership.Role.choices,
        "can_manage": can_manage,
        "consoles": shares.team_consoles(request.user, team),
        "nav_section": "teams",
    }
    return render(request, "teams/detail.html", context)


@login_required
@require_POST
@refusals_as_pages
def team_create(request: HttpRequest) -> HttpResponse:
    team = services.team_create(
        actor=actor_from_request(request),
        name=request.POST.get("name", ""),
        description=request.POST.get("description", ""),
    )
    messages.success(request, f"Created team {team.name}. Add its members below.")
    return redirect("teams:detail", slug=team.slug)


@login_required
@require_POST
@refusals_as_pages
def team_update(request: HttpRequest, slug: str) -> HttpResponse:
    actor = actor_from_request(request)
    team = services.team_for_change(actor=actor, slug=slug, action="team.update")
    team = services.team_update(
        actor=actor, team=team, name=request.POST.get("name", ""), description=request.POST.get("description", "")
    )
    messages.success(request, f"Saved team {team.name}.")
    return redirect("teams:detail", slug=team.slug)


@login_required
@require_POST
@refusals_as_pages
def team_delete(request: HttpRequest, slug: str) -> HttpResponse:
    actor = actor_from_request(request)
    team = services.team_for_change(actor=actor, slug=slug, action="team.delete")
    services.team_delete(actor=actor, team=team)
    messages.success(request, f"Deleted team {team.name}; its console shares went with it.")
    return redirect("teams:list")


@login_required
@require_POST
@refusals_as_pages
def member_add(request: HttpRequest, slug: str) -> HttpResponse:
    actor = actor_from_request(request)
    team = services.team_for_change(actor=actor, slug=slug, action="team.member.add")
    username, role = request.POST.get("user", ""), request.POST.get("role", TeamMembership.Role.MEMBER)
    membership = services.member_add(actor=actor, team=team, username=username, role=role)
    messages.success(request, f"Added {membership.user.get_username()} to {team.name}.")
    return redirect(_members(team.slug))


@login_required
@require_POST
@refusals_as_pages
def member_role(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    actor = actor_from_request(request)
    team = services.team_for_change(actor=actor, slug=slug, action="team.member.role")
    try:
        membership = services.member_set_role(
            actor=actor, team=team, username=username, role=request.POST.get("role", "")
        )
    except services.MemberMissing as exc:  # removed meanwhile, in another tab or by someone else
        messages.info(request, exc.message)
    else:
        messages.success(request, f"{username} is now {membership.get_role_display().lower()} of {team.name}.")
    return redirect(_members(team.slug))


@login_required
@require_POST
@refusals_as_pages
def member_remove(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    actor = actor_from_request(request)
    team = services.team_for_change(actor=actor, slug=slug, action="team.member.remove")
    try:
        services.member_remove(actor=actor, team=team, username=username)
    except services.MemberMissing as exc:  # removed already, in another tab or by someone else
        messages.info(request, exc.message)
    else:
        messages.success(request, f"Removed {username} from {team.name}; console views that relied on it closed.")
    return redirect(_members(team.slug))


def _members(slug: str) -> str:
    return reverse("teams:detail", args=[slug]) + "#members"
