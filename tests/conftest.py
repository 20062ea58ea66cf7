"""Shared test set-up: the rule that a skipped layer is a failure."""

import pytest

from tests import db_flush

# The real lab (libvirtd in its own network namespace, a tiny guest, its networks) for integration and e2e tests.
pytest_plugins = ["tests.lab.fixtures", "tests.lab.network_fixtures"]


def pytest_configure(config):  # type: ignore[no-untyped-def]
    db_flush.install()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """The suite must prove every layer: a test that skips (a missing service, a missing browser) fails."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"Skipped, which counts as a failure here: {reason}"
