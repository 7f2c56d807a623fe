"""A stream's memory (spec section 3): which earlier frames a frame reads, and what is kept of them.

:class:`MemoryBank` alone answers both questions. The policy is one rule
(:func:`stored_after`) on the list of stored frame indices; what is kept of each frame
(the fast engine: its keys and values; the reference engine: its features) lives in
buffers of ``capacity`` entries, grown by doubling, so that a read hands views of the
stored entries instead of concatenating them every frame.

The C++ tracker mirrors these rules in cpp/src/memory.cpp (the policy and the weight
sources): a change here is made there too (tests/cpp/tracker_parity.py compares the two).
"""

from __future__ import annotations

import torch

# Every LONG_TERM_PERIOD frames, a frame stays in memory for good (frames 2, 7, 12, ...
# are appended; they become the long-term entries 5, 10, ... once two frames old).
LONG_TERM_PERIOD = 5


def stored_after(frames: list[int], limit: int | None) -> list[int]:
    """The policy: the frames stored once the frame after ``frames[-1]`` is (``frames``:
    those stored now, oldest first; frame 0 for an empty memory).

    After frame n >= 1 the memory holds frame 0, every multiple of 5 that is at least two
    frames old, frame n - 1 and frame n. The newest frame replaces the previous one, except
    every LONG_TERM_PERIOD frames (and while fewer than two are stored), when the previous
    one is kept for good. ``limit`` caps it: the oldest long-term entry after frame 0 makes room.
    """
    n = frames[-1] + 1 if frames else 0
    after = frames[:-2] + frames[-1:] if len(frames) >= 2 and n % LONG_TERM_PERIOD != 2 else list(frames)
    after.append(n)
    if limit is not None and len(after) > limit:
        del after[1]
    return after


class MemoryBank:
    """The stored frames of one stream, oldest first, and per frame a few tensors of fixed
    shape (its *fields*, e.g. ``keys`` [S, D] and ``values`` [S, V]) in buffers of
    ``capacity`` entries, Tensor[capacity, *shape] each.

    The buffers are made when the first frame is added (or up front, given ``fields``) and
    double when full; a frame that leaves the memory makes room by moving the newer entries
    down one slot (the newest frame replacing the previous one: one entry a frame).
    """

    def __init__(self, limit: int | None = None,
                 fields: dict[str, tuple[tuple[int, ...], torch.dtype, torch.device]] | None = None) -> None:
        """
        Args:
            limit: at most this many entries (>= 3: frame 0, the previous and the newest frame);
                None: the official policy, unbounded.
            fields: name -> an entry's (shape, dtype, device), to allocate the buffers before
                the first frame (a read of an empty memory then has a shape); default: made
                like the first :meth:`add`'s tensors.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 3):
            raise ValueError(f"MemoryBank: limit must be None or an integer >= 3, got {limit!r}")
        self.limit = limit
        self.frames: list[int] = []
        self.buffers: dict[str, torch.Tensor] = {}
        if fields:
            self.buffers = {name: torch.zeros((1, *shape), dtype=dtype, device=device)
                            for name, (shape, dtype, device) in fields.items()}

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def capacity(self) -> int:
        """Entries the buffers hold before they grow (a power of two)."""
        return next(iter(self.buffers.values())).shape[0] if self.buffers else 0

    def weight_sources(self) -> list[int]:
        """The slots of the entries the next frame's grid weight compares it with (spec section 4),
        known before that frame runs: none for frame 0, frame 0 for frame 1, else the previous
        frame and the newest long-term entry (``mem[-2]`` and ``mem[-3]`` once it is stored)."""
        return [self.frames.index(f) for f in stored_after(self.frames, self.limit)[-2:-4:-1]]

    def add(self, **entry: torch.Tensor) -> None:
        """Stores the frame after the newest stored one (frame 0 first): one tensor per field,
        copied into the buffers (the caller's tensors are not kept)."""
        if self.buffers and set(entry) != set(self.buffers):
            raise ValueError(f"MemoryBank.add: fields must be {sorted(self.buffers)}, got {sorted(entry)}")
        after = stored_after(self.frames, self.limit)
        self.reserve(len(after), entry)
        # The frames that stay move down to their new slots (each source slot is at or after
        # its destination, so walking up overwrites nothing still needed).
        for slot, frame in enumerate(after[:-1]):
            old = self.frames.index(frame, slot)
            if old != slot:
                for buf in self.buffers.values():
                    buf[slot] = buf[old]
        for name, x in entry.items():
            self.buffers[name][len(after) - 1] = x
        self.frames = after

    def reserve(self, entries: int, example: dict[str, torch.Tensor] | None = None) -> None:
        """Grows the buffers (doubling) to hold at least ``entries`` entries."""
        if not self.buffers:
            if not example:
                raise RuntimeError("MemoryBank.reserve: no buffers yet and no example entry to make them from")
            self.buffers = {name: torch.zeros((1, *x.shape), dtype=x.dtype, device=x.device) for name, x in example.items()}
        capacity = self.capacity
        if entries <= capacity:
            return
        while capacity < entries:
            capacity *= 2
        for name, buf in self.buffers.items():
            grown = buf.new_zeros((capacity, *buf.shape[1:]))
            grown[:len(self.frames)] = buf[:len(self.frames)]
            self.buffers[name] = grown

    def view(self, name: str, entries: int) -> torch.Tensor:
        """The first ``entries`` slots of a field's buffer (the stored frames, then padding),
        Tensor[entries, *shape]: a view, no copy."""
        self.reserve(entries)
        return self.buffers[name][:entries]

    def entry(self, name: str, slot: int) -> torch.Tensor:
        """One stored frame's field, Tensor[*shape]: a view."""
        if not 0 <= slot < len(self.frames):
            raise IndexError(f"MemoryBank.entry: slot {slot} out of range for {len(self.frames)} stored frames")
        return self.buffers[name][slot]
