from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from kvmweb import access
from kvmweb.operations.models import Operation


def operations_for(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Operation]:
    return access.visible_operations(user).select_related("requested_by")


def active_operations_for(user: AbstractBaseUser | AnonymousUser, limit: int = 20) -> list[Operation]:
    return list(operations_for(user).filter(status__in=Operation.ACTIVE)[:limit])


def active_operation_by_target(target_type: str, target_ids: list[str]) -> dict[str, Operation]:
    ops = Operation.objects.filter(target_type=target_type, target_id__in=target_ids, status__in=Operation.ACTIVE)
    return {op.target_id: op for op in ops}
