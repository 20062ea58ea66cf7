"""Request bodies for upload tests: one that arrives a chunk at a time, so a test can act between chunks."""

from __future__ import annotations

import io
from collections.abc import Callable


class Arriving(io.RawIOBase):
    """`data` handed out at most `chunk` bytes per read; `after(n)` runs before each read once n chunks
    were served (to wait for the worker, cancel, ...). Reading past the data gives b"", as a client
    that went away would."""

    def __init__(self, data: bytes, chunk: int, after: Callable[[int], None] | None = None) -> None:
        self.data, self.chunk, self.after = data, chunk, after
        self.served = 0
        self.pos = 0

    def readinto(self, buffer: memoryview, /) -> int:  # type: ignore[override]
        if self.after is not None and self.served:
            self.after(self.served)
        piece = self.data[self.pos : self.pos + min(self.chunk, len(buffer))]
        buffer[: len(piece)] = piece
        if piece:
            self.pos += len(piece)
            self.served += 1
        return len(piece)
