"""Integration tests run against the real KVM lab.

The lab fixtures (``lab_host``, ``libvirt_host``, ``tiny_guest``, ``running_tiny_guest``,
``two_hosts``, ``guest_name``) live in tests/lab/fixtures.py, which tests/conftest.py registers as
a plugin for every test layer; they are not redefined here, so that one test run shares one lab.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import process_env, running


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A real Celery worker process on the test database and the real Redis, one per test module."""
    log: Path = tmp_path_factory.mktemp("worker") / "worker.log"
    with django_db_blocker.unblock():
        env = process_env()
    args = ["celery", "-A", "kvmweb", "worker", "-Q", "default", "--pool", "solo", "-l", "info"]
    with running(args, env=env, log=log, ready=lambda: "ready." in log.read_text(), what="worker"):
        yield log
