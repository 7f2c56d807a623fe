"""Track association (spec section 6), decided on the host from small matrices.

The device work (similarities between the previous frame's or a candidate's
instances and the current ones) is gathered into one matrix and moved to the
host once per frame; the greedy decisions then run on numpy arrays, with no
device synchronisation per comparison.

The candidates are kept as rows (:class:`CandidateRows`): one buffer of query embeddings
on the device, their frames and tracks on the host. A frame multiplies its keys with all
of them in one product, and the matching (:func:`match_candidate_rows`) visits only the
entries that hold a row above the threshold for an instance still without a track: the
per-frame Python work depends on the matches, not on how many candidates have piled up.

The C++ tracker mirrors these rules in cpp/src/association.cpp: a change here is made there
too (tests/cpp/tracker_parity.py compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from visolo_fast.transfer import to_device


@dataclass
class Candidate:
    """Earlier instances that lost their track: they may be re-identified later."""

    frame: int  # the frame they were last seen in
    queries: torch.Tensor  # [k, D]: their tracking query embeddings in that frame
    tracks: list[int]  # their track ids


def best_free(column: np.ndarray, taken, threshold: float) -> int | None:
    """The row with the highest value ``>= threshold`` in ``column`` that is not in ``taken``."""
    # NB: stable, so ties go to the earlier row; the official argsort leaves ties unordered.
    # NB: numpy sorts NaN last, and `not >=` stops there, as the official `>=` test skips NaN.
    for row in np.argsort(-column, kind="stable"):
        if not column[row] >= threshold:
            return None
        if row not in taken:
            return int(row)
    return None


def match_previous(similarity: np.ndarray, threshold: float) -> list[int | None]:
    """Step 1: each current instance (column, in score order) takes the previous frame's
    instance (row) it resembles most, among those not taken yet and ``>= threshold``.

    Returns, per current instance, the row it took or None.
    """
    taken: set[int] = set()
    rows: list[int | None] = []
    for i in range(similarity.shape[1]):
        row = best_free(similarity[:, i], taken, threshold)
        if row is not None:
            taken.add(row)
        rows.append(row)
    return rows


def match_candidate_rows(similarity: np.ndarray, entries: np.ndarray, row_tracks: np.ndarray,
                         tracks: list[int | None], threshold: float) -> np.ndarray:
    """Step 2 on the candidates as rows: the current instances without a track try the
    candidate entries, newest first; in each entry, each such instance (score order) takes
    the best row ``>= threshold`` not taken yet in that entry; stop when all have a track.

    An entry none of whose rows reaches ``threshold`` for an instance still without a track
    changes nothing, so only the entries that do (found with one comparison over all rows)
    are visited: the same decisions as visiting every entry.

    Args:
        similarity: [n, K] sigmoid similarities of the candidate rows with the current instances.
        entries: int [n], non-decreasing: each row's entry (its frame), the newest last.
        row_tracks: int [n]: each row's track id.
        tracks: per current instance (score order), its track id or None; filled in place.

    Returns:
        The rows taken (int64, ascending): they leave the candidates.
    """
    free = [i for i, track in enumerate(tracks) if track is None]
    if not free or similarity.shape[0] == 0:
        return np.zeros(0, np.int64)
    # NB: NaN >= threshold is False, as best_free skips NaN.
    reached = np.flatnonzero((similarity[:, free] >= threshold).any(axis=1))
    taken_rows: list[int] = []
    for entry in np.unique(entries[reached])[::-1]:
        if not free:
            break
        start, stop = np.searchsorted(entries, entry, "left"), np.searchsorted(entries, entry, "right")
        block, taken = similarity[start:stop], set()
        for i in free:
            row = best_free(block[:, i], taken, threshold)
            if row is not None:
                taken.add(row)
                tracks[i] = int(row_tracks[start + row])
        free = [i for i in free if tracks[i] is None]
        taken_rows += [start + row for row in taken]
    return np.array(sorted(taken_rows), np.int64)


def match_candidates(candidates: list[Candidate], similarities: list[np.ndarray], tracks: list[int | None],
                     threshold: float) -> list[Candidate]:
    """Step 2 on candidate entries (:func:`match_candidate_rows` on their rows).

    Args:
        candidates: the candidate entries, oldest first.
        similarities: per entry, [k_entry, K_current] sigmoid similarities.
        tracks: per current instance (score order), its track id or None; filled in place.

    Returns:
        The candidate entries left (taken instances leave their entry, empty entries go).
    """
    sizes = [len(c.tracks) for c in candidates]
    width = len(tracks)
    rows = np.concatenate([s.reshape(-1, width) for s in similarities]) if candidates else np.zeros((0, width))
    taken = match_candidate_rows(rows, np.repeat(np.arange(len(candidates)), sizes),
                                 np.array([t for c in candidates for t in c.tracks], np.int64), tracks, threshold)
    left, start = [], 0
    for entry, size in zip(candidates, sizes):
        mine = taken[(taken >= start) & (taken < start + size)] - start
        start += size
        if mine.size == 0:
            left.append(entry)
        elif mine.size < size:
            rest = np.setdiff1d(np.arange(size), mine)
            left.append(Candidate(entry.frame, entry.queries[to_device(rest, entry.queries.device, torch.int64)],
                                  [entry.tracks[r] for r in rest]))
    return left


class CandidateRows:
    """The candidates (spec section 6) as rows, oldest entry first: every lost instance not
    re-identified yet, with the frame it was last seen in (its entry) and its track.

    The query embeddings are rows of one device buffer, grown by doubling and read in place
    (:meth:`queries`); the frames and tracks are host arrays beside it. Appending an entry,
    dropping the oldest entries (:meth:`expire`) and removing re-identified rows
    (:meth:`remove`, which keeps the order of the others) cost amortised O(1) per row, or
    O(rows after the first removed one). Nothing waits for the device.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._queries: torch.Tensor | None = None  # float32 [capacity, D]
        self._frames = np.zeros(0, np.int64)  # [capacity]
        self._tracks = np.zeros(0, np.int64)  # [capacity]
        self._head = self._tail = 0  # the rows are [head, tail)

    def __len__(self) -> int:
        return self._tail - self._head

    @property
    def capacity(self) -> int:
        return self._frames.shape[0]

    def queries(self) -> torch.Tensor:
        """float32 [n, D]: the rows' query embeddings (a view of the buffer)."""
        return self._queries[self._head:self._tail]

    @property
    def frames(self) -> np.ndarray:
        """int64 [n], non-decreasing: the frame each row was last seen in (its entry)."""
        return self._frames[self._head:self._tail]

    @property
    def tracks(self) -> np.ndarray:
        """int64 [n]: each row's track."""
        return self._tracks[self._head:self._tail]

    def entries(self) -> list[Candidate]:
        """The rows as candidate entries, oldest first (the queries are views)."""
        frames, out = self.frames, []
        for frame in np.unique(frames):
            start, stop = np.searchsorted(frames, frame, "left"), np.searchsorted(frames, frame, "right")
            out.append(Candidate(int(frame), self.queries()[start:stop], self.tracks[start:stop].tolist()))
        return out

    def append(self, frame: int, queries: torch.Tensor, tracks: list[int]) -> None:
        """A new entry, newer than every row: ``queries`` (float32 [k, D]) of the ``tracks``
        last seen in ``frame``."""
        k = len(tracks)
        if k == 0:
            return
        self._room(k, queries)
        end = self._tail + k
        self._queries[self._tail:end] = queries
        self._frames[self._tail:end] = frame
        self._tracks[self._tail:end] = tracks
        self._tail = end

    def remove(self, rows: np.ndarray) -> None:
        """Removes ``rows`` (indices into the rows, ascending), keeping the others' order."""
        if rows.size == 0:
            return
        first = int(rows[0])
        keep = np.setdiff1d(np.arange(first, len(self)), rows, assume_unique=True) + self._head
        at, end = self._head + first, self._head + first + keep.size
        if keep.size:
            self._queries[at:end] = self._queries[to_device(keep, self.device, torch.int64)]
        self._frames[at:end] = self._frames[keep]
        self._tracks[at:end] = self._tracks[keep]
        self._tail = end

    def expire(self, before: int) -> tuple[np.ndarray, np.ndarray]:
        """Removes the rows last seen before frame ``before``; returns their (tracks, frames)."""
        cut = int(np.searchsorted(self.frames, before, "left"))
        tracks, frames = self.tracks[:cut].copy(), self.frames[:cut].copy()
        self._head += cut
        if self._head == self._tail:
            self._head = self._tail = 0
        return tracks, frames

    def _room(self, k: int, like: torch.Tensor) -> None:
        """Makes room for ``k`` more rows after the last one: the rows move to the front of
        the buffer when they fill at most half of it, else to one twice as large."""
        n = len(self)
        if self._queries is not None and self._tail + k <= self.capacity:
            return
        capacity = self.capacity
        if self._queries is None or n + k > capacity // 2:
            capacity = max(2 * capacity, 2 * (n + k), 16)
            queries = like.new_empty((capacity, like.shape[1]))
        else:
            queries = self._queries
        # NB: a copy, even within the same buffer: the rows may overlap their new place.
        if n:
            queries[:n] = self.queries().clone() if queries is self._queries else self.queries()
        frames, tracks = np.zeros(capacity, np.int64), np.zeros(capacity, np.int64)
        frames[:n], tracks[:n] = self.frames, self.tracks
        self._queries, self._frames, self._tracks = queries, frames, tracks
        self._head, self._tail = 0, n
