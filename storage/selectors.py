from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, QuerySet

from kvmweb import access
from kvmweb.errors import NotVisible
from storage.models import StoragePool, Volume


def pool_list(user: AbstractBaseUser | AnonymousUser, *, host_id: int | None = None) -> QuerySet[StoragePool]:
    pools = access.visible_pools(user).select_related("host").defer("xml").annotate(volume_count=Count("volumes"))
    if host_id is not None:
        pools = pools.filter(host_id=host_id)
    return pools.order_by("host__name", "name")


def pool_get(user: AbstractBaseUser | AnonymousUser, pool_id: int) -> StoragePool:
    pool = access.visible_pools(user).select_related("host").filter(pk=pool_id).first()
    if pool is None:
        raise NotVisible("No such storage pool.")
    return pool


def pool_volumes(pool: StoragePool) -> QuerySet[Volume]:
    return pool.volumes.order_by("name")
