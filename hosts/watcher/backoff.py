"""How long to wait before the next connection attempt: exponential, capped, with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """1 s, 2 s, 4 s ... up to 60 s; each delay is spread by +-``jitter`` so hosts don't retry in step.

    ``reset()`` after a connection that worked starts the schedule again from ``initial``.
    """

    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random, repr=False)
    attempts: int = 0

    def base(self) -> float:
        """The delay before jitter for the next attempt."""
        # The exponent is capped: a host that stays down for days must not overflow the float.
        return float(min(self.maximum, self.initial * self.factor ** min(self.attempts, 64)))

    def next(self) -> float:
        base = self.base()
        self.attempts += 1
        spread = base * self.jitter
        return max(0.0, min(self.maximum, base + self.rng.uniform(-spread, spread)))

    def reset(self) -> None:
        self.attempts = 0
