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
