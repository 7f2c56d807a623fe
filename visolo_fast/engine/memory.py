"""VISOLO's memory policy (spec section 3): which earlier frames a frame reads."""

from __future__ import annotations

from typing import Generic, TypeVar

Entry = TypeVar("Entry")

# Every LONG_TERM_PERIOD frames, a frame stays in memory for good (frames 2, 7, 12, ...
# are appended; they become the long-term entries 5, 10, ... once two frames old).
LONG_TERM_PERIOD = 5


class MemoryBank(Generic[Entry]):
    """The stored frames, oldest first.

    After frame n >= 1 it holds frame 0, every multiple of 5 that is at least two
    frames old, frame n - 1 and frame n. It grows by one entry every 5 frames, unless
    ``limit`` caps it: then the oldest long-term entry after frame 0 makes room.
    """

    def __init__(self, limit: int | None = None) -> None:
        """limit: at most this many entries (>= 3: frame 0, the previous and the newest
        frame); None: the official policy, unbounded."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 3):
            raise ValueError(f"MemoryBank: limit must be None or an integer >= 3, got {limit!r}")
        self.limit = limit
        self.indices: list[int] = []
        self.entries: list[Entry] = []

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, index: int, entry: Entry) -> None:
        """Stores frame ``index``, the frame after the newest stored one."""
        expected = self.indices[-1] + 1 if self.indices else 0
        if index != expected:
            raise ValueError(f"MemoryBank.add: frames must come in order, expected frame {expected}, got {index}")
        # The newest frame replaces the previous one, except every LONG_TERM_PERIOD frames
        # (and while fewer than two are stored), when the previous one is kept for good.
        if len(self.entries) >= 2 and index % LONG_TERM_PERIOD != 2:
            del self.indices[-2], self.entries[-2]
        self.indices.append(index)
        self.entries.append(entry)
        if self.limit is not None and len(self.entries) > self.limit:
            del self.indices[1], self.entries[1]

    def append(self, entry: Entry) -> None:
        """Stores the frame after the newest stored one (frame 0 first)."""
        self.add(self.indices[-1] + 1 if self.indices else 0, entry)

    def weight_sources(self) -> list[Entry]:
        """The entries the newest frame's grid weight compares it with (spec section 4):
        none for frame 0, frame 0 for frame 1, else the previous frame and the newest
        long-term entry (``mem[-2]`` and ``mem[-3]``)."""
        return self.entries[-2:-4:-1]

    def next_weight_sources(self) -> list[Entry]:
        """The entries the next frame's grid weight will compare it with, once it is stored
        (:meth:`weight_sources` after :meth:`append`): known before the frame is."""
        after = MemoryBank(self.limit)
        after.indices, after.entries = list(self.indices), list(self.entries)
        after.append(None)  # NB: a stand-in for the next frame, never one of its own sources
        return after.weight_sources()
