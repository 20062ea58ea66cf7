import os
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kvmweb.settings")

app = Celery("kvmweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


# libvirt keepalive needs an event loop registered before any connection opens, in the
# process that will own the connections: each prefork child, or the worker itself when solo.
@worker_process_init.connect
def _start_libvirt_events_in_child(**_: Any) -> None:
    from kvmweb import virt

    virt.register_event_loop()


@worker_init.connect
def _start_libvirt_events_in_solo_worker(sender: Any = None, **_: Any) -> None:
    pool = str(getattr(sender, "pool_cls", ""))
    if "solo" in pool or "thread" in pool:
        from kvmweb import virt

        virt.register_event_loop()
