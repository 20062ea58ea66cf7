"""A reference to the object an operation or audit event is about, without a foreign key to it."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Target:
    type: str  # "host", "vm", "network", "pool", "volume"
    id: str
    label: str

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "id": self.id, "label": self.label}
