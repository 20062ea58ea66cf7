from celery import shared_task

from hosts.models import Host
from kvmweb.actors import SYSTEM
from kvmweb.errors import Conflict
from kvmweb.operations.services import operation_start


@shared_task(name="hosts.reconcile_all")
def reconcile_all_hosts() -> int:
    """Queue a reconcile for every enabled host that isn't busy; returns how many were queued."""
    queued = 0
    for host in Host.objects.filter(enabled=True):
        try:
            operation_start(
                kind="host.reconcile", target=host.as_target(), actor=SYSTEM, audited=False, queue=host.task_queue
            )
        except Conflict:
            continue  # busy hosts are reconciled by whatever they are doing, or next round
        queued += 1
    return queued
