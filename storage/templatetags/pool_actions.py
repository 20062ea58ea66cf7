"""`{% pool_actions pool as actions %}`: the pool actions the signed-in user may take now."""

from __future__ import annotations

from typing import Any

from django import template

from kvmweb import access
from storage.models import StoragePool
from storage.pools import PoolAction, allowed_pool_actions
from storage.pools import pool_users as users_of

register = template.Library()


@register.simple_tag(takes_context=True)
def pool_actions(context: dict[str, Any], pool: StoragePool) -> dict[str, PoolAction]:
    request = context.get("request")
    if request is None or not access.is_admin(request.user):
        return {}
    return {spec.name.replace("-", "_"): spec for spec in allowed_pool_actions(pool)}


@register.simple_tag
def pool_users(pool: StoragePool) -> list[str]:
    """The VMs (as last observed) with a disk in `pool`: undefining it is refused while there are any."""
    return users_of(pool)
