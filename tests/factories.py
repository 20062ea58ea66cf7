"""Personas and objects for tests. ada administers; alice is a member of her host; bob sees nothing."""

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from hosts.models import Host

PASSWORD = "correct-horse-battery"


@cache
def password_hash() -> str:
    # The real hasher costs ~0.25 s a call and every persona shares one password: hash it once a run.
    return make_password(PASSWORD)


def make_user(username: str, *, admin: bool = False) -> Any:
    return get_user_model().objects.create(
        username=username, password=password_hash(), is_staff=admin, is_superuser=admin
    )


def make_host(name: str = "lab", *, uri: str = "test:///default", members: tuple[Any, ...] = (), **fields: Any) -> Host:
    defaults: dict[str, Any] = {"state": Host.State.CONNECTED, "last_seen": timezone.now()}
    host = Host.objects.create(name=name, uri=uri, **{**defaults, **fields})
    host.members.set(members)
    return host


def make_vm(host: Host, name: str, *, owner: Any = None, state: str = "running", **fields: Any) -> Any:
    import uuid

    from vms.models import VirtualMachine

    defaults: dict[str, Any] = {
        "vcpus": 1,
        "memory_kib": 196608,
        "max_memory_kib": 196608,
        "state_changed": timezone.now(),
    }
    return VirtualMachine.objects.create(
        uuid=fields.pop("uuid", uuid.uuid4()), host=host, name=name, owner=owner, state=state, **{**defaults, **fields}
    )
