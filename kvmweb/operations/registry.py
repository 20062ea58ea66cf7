"""The kinds of operation a worker knows how to run, registered by the apps that own them."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Handler = Callable[..., dict[str, Any] | None]
# Reads what a batch's handlers need in one query and leaves it on each operation (`Operation.target_row`).
Preload = Callable[[Sequence[Any]], None]
# Writes what a batch's handlers held back on those rows, just before the operations' outcomes are recorded.
Settle = Callable[[Sequence[Any]], None]


@dataclass(frozen=True, slots=True)
class OperationKind:
    name: str
    label: str
    handler: Handler
    deadline_seconds: int
    # Transient failures (host unreachable) are retried with backoff only where waiting can help.
    retry_transient: bool
    # The most operations of this kind a bulk request hands one worker task (1: a task each). Only kinds
    # whose call returns at once batch: the task runs its operations one after another.
    batch: int = 1
    preload: Preload | None = None
    settle: Settle | None = None


_KINDS: dict[str, OperationKind] = {}


def operation_kind(
    name: str,
    *,
    label: str,
    deadline_seconds: int = 900,
    retry_transient: bool = True,
    batch: int = 1,
    preload: Preload | None = None,
    settle: Settle | None = None,
) -> Callable[[Handler], Handler]:
    if batch > 1 and retry_transient:
        raise ValueError(f"{name}: a batch runs its operations in turn, so one of them can't wait for a retry")

    def register(handler: Handler) -> Handler:
        _KINDS[name] = OperationKind(name, label, handler, deadline_seconds, retry_transient, batch, preload, settle)
        return handler

    return register


def get_kind(name: str) -> OperationKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise LookupError(f"No operation kind {name!r} is registered") from None


def label_for(name: str) -> str:
    kind = _KINDS.get(name)
    return kind.label if kind else name


def kind_choices() -> list[tuple[str, str]]:
    return sorted(((k.name, k.label) for k in _KINDS.values()), key=lambda pair: pair[1])
