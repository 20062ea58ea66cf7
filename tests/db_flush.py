"""The database flush between transactional tests: rows deleted, and retried on a deadlock.

TRUNCATE gives every table a new file, which PostgreSQL syncs at commit: about 1.5 s for this
schema, paid by every integration and browser test. The tables hold a few rows by then, so
deleting them, with the foreign keys (all DEFERRABLE) checked at commit, takes milliseconds.

Integration and browser tests run the real stack (worker, events, console proxy) as separate processes
that keep writing after a test's last assertion: a console session closing, an event refreshing a VM.
The flush empties every table in one transaction, so it can deadlock with such a write. PostgreSQL
then aborts one side; when the flush is the one aborted, running it again is correct.
"""

import time
from collections.abc import Callable
from typing import Any

from django.db import OperationalError
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations

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


def deleting(sql_flush: Callable[..., list[str]]) -> Callable[..., list[str]]:
    def sql_flush_by_delete(
        self: Any, style: Any, tables: list[str], *, reset_sequences: bool = False, allow_cascade: bool = False
    ) -> list[str]:
        if reset_sequences or allow_cascade or not tables:
            return sql_flush(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return ["SET CONSTRAINTS ALL DEFERRED"] + [f"DELETE FROM {self.quote_name(table)}" for table in tables]

    sql_flush_by_delete.deletes_rows = True  # type: ignore[attr-defined]
    return sql_flush_by_delete


def install() -> None:
    if not getattr(PostgresOperations.sql_flush, "deletes_rows", False):
        PostgresOperations.sql_flush = deleting(PostgresOperations.sql_flush)  # type: ignore[method-assign]
    current = BaseDatabaseOperations.execute_sql_flush
    if not getattr(current, "retries_deadlocks", False):
        BaseDatabaseOperations.execute_sql_flush = retrying(current)  # type: ignore[method-assign]
