from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _in_memory_channel_layer(request):  # type: ignore[no-untyped-def]
    # Unit tests check what is published, not Redis; integration tests use the real layer.
    # The adapter's tests don't touch Django at all.
    if "virt" in request.node.path.parts:
        return
    settings = request.getfixturevalue("settings")
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # The in-memory layer's queues belong to the test's loop and are not thread safe: a push landing
    # while a receive already waits would never wake it. Each push is delivered before publish returns.
    from kvmweb.realtime import publish

    send = publish._send

    def send_and_wait(*args: Any, **kwargs: Any) -> None:
        send(*args, **kwargs)
        publish.publish_flush()

    request.getfixturevalue("monkeypatch").setattr(publish, "_send", send_and_wait)


@pytest.fixture
def no_libvirt():  # type: ignore[no-untyped-def]
    """A context manager under which any libvirt connection from the adapter fails the test.

    Every adapter call gets its connection from the cache in kvmweb.virt.connection (`connect` and
    `get_connection` both end in `_Cache.get`, cached or not), and the events loop opens its own with
    `_opener`: patching those two catches all of them, however a module imported `connect`.
    A context manager, not a patch for the whole test, so the test can make its domains first.
    """
    from contextlib import contextmanager

    from kvmweb.virt import connection

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a page or API read called libvirt")

    @contextmanager
    def guard():  # type: ignore[no-untyped-def]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(connection._Cache, "get", refuse)
            patch.setattr(connection, "_opener", refuse)
            yield

    return guard


@pytest.fixture
def ada(db):  # type: ignore[no-untyped-def]
    from tests.factories import make_user

    return make_user("ada", admin=True)


@pytest.fixture
def alice(db):  # type: ignore[no-untyped-def]
    from tests.factories import make_user

    return make_user("alice")


@pytest.fixture
def bob(db):  # type: ignore[no-untyped-def]
    from tests.factories import make_user

    return make_user("bob")


@pytest.fixture
def host(alice):  # type: ignore[no-untyped-def]
    from tests.factories import make_host

    return make_host("lab", members=(alice,))


@pytest.fixture
def queued(monkeypatch):  # type: ignore[no-untyped-def]
    """The ids of operations that would go to the broker; tests run them with tests.runs.run."""
    from kvmweb.operations import services as operation_services

    sent: list[int] = []
    monkeypatch.setattr(operation_services, "_enqueue", lambda op_id, kind, queue: sent.append(op_id))
    return sent
