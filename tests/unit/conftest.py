import pytest


@pytest.fixture(autouse=True)
def _in_memory_channel_layer(request):  # type: ignore[no-untyped-def]
    # Unit tests check what is published, not Redis; integration tests use the real layer.
    # The adapter's tests don't touch Django at all.
    if "virt" in request.node.path.parts:
        return
    settings = request.getfixturevalue("settings")
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


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
    monkeypatch.setattr(operation_services, "_enqueue", lambda op_id, queue: sent.append(op_id))
    return sent
