from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from kvmweb import access
from kvmweb.ui import refusals_as_pages
from storage import selectors
from storage.models import StoragePool
from storage.pools import PoolAction, allowed_pool_actions, pool_users


@login_required
def pool_list(request: HttpRequest) -> HttpResponse:
    host = request.GET.get("host", "")
    host_id = int(host) if host.isdigit() else None
    pools = list(selectors.pool_list(request.user, host_id=host_id))
    hosts = list(access.visible_hosts(request.user).only("id", "name"))
    context = {
        "pools": pools,
        "hosts": hosts,
        "host_filter": host,
        "saved": selectors.saved_states(request.user, host_id=host_id),
    }
    return render(request, "storage/list.html", context)


@login_required
@refusals_as_pages
def pool_detail(request: HttpRequest, pool_id: int) -> HttpResponse:
    pool = selectors.pool_get(request.user, pool_id)
    context = {
        "pool": pool,
        "volumes": list(selectors.pool_volumes(pool)),
        "actions": _pool_actions(request, pool),
        "users": pool_users(pool),
    }
    return render(request, "storage/detail.html", context)


def _pool_actions(request: HttpRequest, pool: StoragePool) -> dict[str, PoolAction]:
    """The actions the pool's state allows now, by name (start, build, autostart_on, ...), for administrators."""
    if not access.is_admin(request.user):
        return {}
    return {spec.name.replace("-", "_"): spec for spec in allowed_pool_actions(pool)}
