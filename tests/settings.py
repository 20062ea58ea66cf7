"""The real settings, with safe defaults for a bare `pytest` run (make test exports real values)."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-not-a-secret")
os.environ.setdefault("DEBUG", "0")

from kvmweb.settings import *  # noqa: F403
