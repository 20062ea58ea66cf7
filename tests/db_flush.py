"""Retry pytest-django's database flush when PostgreSQL picks it as a deadlock victim.

Integration and browser tests run the real stack (worker, events, console proxy) as separate processes
that keep writing after a test's last assertion: a console session closing, an event refreshing a VM.
The flush between transactional tests TRUNCATEs every table at once, so it can deadlock with such a
write. PostgreSQL then aborts one side; when the flush is the one aborted, running it again is correct.
"""

import time
from collections.abc import Callable
from typing import Any

from django.db import OperationalError
from django.db.backends.base.operations import BaseDatabaseOperations

DEADLOCK_SQLSTATE = "40P01"
ATTEMPTS = 5


def is_deadlock(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == DEADLOCK_SQLSTATE


def retrying(flush: Callable[[Any, list[str]], None]) -> Callable[[Any, list[str]], None]:
    def execute_sql_flush(self: Any, sql_list: list[str]) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return flush(self, sql_list)
            except OperationalError as exc:
                if attempt == ATTEMPTS or not is_deadlock(exc):
                    raise
                time.sleep(0.2 * attempt)

    execute_sql_flush.retries_deadlocks = True  # type: ignore[attr-defined]
    return execute_sql_flush


def install() -> None:
    current = BaseDatabaseOperations.execute_sql_flush
    if not getattr(current, "retries_deadlocks", False):
        BaseDatabaseOperations.execute_sql_flush = retrying(current)  # type: ignore[method-assign]
