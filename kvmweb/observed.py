"""Applying what a host reported to an index row that can be marked gone (networks, pools)."""

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from django.db.models import Model

M = TypeVar("M", bound=Model)


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


def observed_row(model: type[M], lookup: dict[str, Any], values: dict[str, Any], fields: Sequence[str]) -> M | None:
    """The row for one fresh observation: created, or updated when it differs; None when nothing changed.

    The worker that made the object and the events process (its libvirt event) may both insert the new
    row: get_or_create lets the second take the first one's row instead of failing on the unique key.
    """
    row, created = model._default_manager.get_or_create(**lookup, defaults=values)
    if created:
        return row
    if not observe(row, values):  # type: ignore[arg-type]  # both models given have gone_since
        return None
    row.save(update_fields=[*fields, "gone_since", "updated"])
    return row
