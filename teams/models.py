from django.conf import settings
from django.db import models

NAME_MAX = 100


class Team(models.Model):
    """People grouped for a lab or a class: its members may watch consoles shared with the team."""

    name = models.CharField(max_length=NAME_MAX, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    """One person in one team. Instructors also watch and share the consoles of the members' VMs."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        INSTRUCTOR = "instructor", "Instructor"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team", "user__username"]
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team_user")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.team_id} as {self.role}"
