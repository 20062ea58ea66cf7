from typing import Any

from django.http import HttpRequest

from hosts.selectors import any_simulated_host
from kvmweb import access
from kvmweb.operations.selectors import active_operations_for

_SECTIONS = ("hosts", "vms", "networks", "storage", "operations", "audit")


def shell(request: HttpRequest) -> dict[str, Any]:
    """What the layout around every page needs: role, live-updates URL, the operations drawer."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"is_admin": False, "ws_url": "/ws/events/", "nav_section": "", "active_operations": []}
    first = request.path.strip("/").split("/", 1)[0]
    return {
        "is_admin": access.is_admin(user),
        "ws_url": "/ws/events/",
        "nav_section": first if first in _SECTIONS else "dashboard",
        "active_operations": active_operations_for(user),
        "simulated_hosts": any_simulated_host(),
    }
