"""The test flush retries a deadlock, and only a deadlock."""

import pytest
from django.db import OperationalError

from tests.db_flush import retrying


class SqlError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def failing(sqlstate: str, times: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def flush(self: object, sql_list: list[str]) -> None:
        calls.append(1)
        if len(calls) <= times:
            raise OperationalError("boom") from SqlError(sqlstate)

    return calls, flush


def test_a_deadlocked_flush_runs_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.db_flush.time.sleep", lambda seconds: None)
    calls, flush = failing("40P01", times=2)
    retrying(flush)(None, ["TRUNCATE x"])  # type: ignore[arg-type]
    assert len(calls) == 3


def test_other_errors_are_not_retried() -> None:
    calls, flush = failing("42P01", times=1)
    with pytest.raises(OperationalError):
        retrying(flush)(None, [])  # type: ignore[arg-type]
    assert len(calls) == 1


def test_a_deadlock_that_persists_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.db_flush.time.sleep", lambda seconds: None)
    calls, flush = failing("40P01", times=99)
    with pytest.raises(OperationalError):
        retrying(flush)(None, [])  # type: ignore[arg-type]
    assert len(calls) == 5


def test_the_flush_deletes_rows_and_defers_foreign_keys() -> None:
    from django.db import connection
    from django.db.backends.postgresql.operations import DatabaseOperations

    from tests.db_flush import deleting

    flush = deleting(DatabaseOperations.sql_flush)
    sql = flush(connection.ops, None, ["a", "b"])
    assert sql == ["SET CONSTRAINTS ALL DEFERRED", 'DELETE FROM "a"', 'DELETE FROM "b"']


def test_a_flush_that_resets_sequences_stays_a_truncate() -> None:
    from django.core.management.color import no_style
    from django.db import connection
    from django.db.backends.postgresql.operations import DatabaseOperations

    from tests.db_flush import deleting

    flush = deleting(DatabaseOperations.sql_flush)
    sql = flush(connection.ops, no_style(), ["a"], reset_sequences=True)
    assert sql == ['TRUNCATE "a" RESTART IDENTITY;']


@pytest.mark.django_db(transaction=True)
def test_rows_linked_by_foreign_keys_are_all_flushed() -> None:
    from django.core.management import call_command

    from tests.factories import make_host, make_user

    make_host("flushed", members=(make_user("flushed"),))
    call_command("flush", interactive=False, verbosity=0)
    from django.contrib.auth import get_user_model

    from hosts.models import Host

    assert not Host.objects.exists() and not get_user_model().objects.exists()
