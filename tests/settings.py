"""The real settings, with safe defaults for a bare `pytest` run (make test exports real values)."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-not-a-secret")
os.environ.setdefault("DEBUG", "0")

from kvmweb.settings import *  # noqa: F403

# In-process helpers (Channels' database_sync_to_async threads) would keep their connections open
# past the run and block dropping the test database; the processes tests start use the real value.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
