"""Applying what a host reported to an index row that can be marked gone (networks, pools)."""

from typing import Any, Protocol


class Observed(Protocol):
    gone_since: Any


def observe(row: Observed, values: dict[str, Any]) -> bool:
    """Set the observed values on `row` in memory; True when anything changed or it came back from gone."""
    if row.gone_since is None and all(getattr(row, key) == value for key, value in values.items()):
        return False
    for key, value in values.items():
        setattr(row, key, value)
    row.gone_since = None
    return True
