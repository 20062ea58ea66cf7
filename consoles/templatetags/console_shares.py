"""Template tags for the sharing parts other pages include: they call the selectors, nothing more.

The VM page and the VM list belong to other views; these let their templates include the
console-sharing card and the "Shared with me" list without those views knowing about consoles.
"""

from typing import Any

from django import template

from consoles import shares

register = template.Library()


@register.simple_tag
def console_share_panel(user: Any, vm: Any) -> shares.SharePanel:
    """{% console_share_panel request.user vm as panel %}: what the VM page's sharing card shows."""
    return shares.share_panel(user, vm)


@register.simple_tag
def consoles_shared_with(user: Any) -> list[Any]:
    """{% consoles_shared_with request.user as shared %}: consoles others shared with this user."""
    return shares.shared_with(user)
