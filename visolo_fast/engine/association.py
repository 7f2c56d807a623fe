"""Track association (spec section 6), decided on the host from small matrices.

The device work (similarities between the previous frame's or a candidate's
instances and the current ones) is gathered into one matrix and moved to the
host once per frame; the greedy decisions then run on numpy arrays, with no
device synchronisation per comparison.
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


def match_candidates(candidates: list[Candidate], similarities: list[np.ndarray], tracks: list[int | None],
                     threshold: float) -> list[Candidate]:
    """Step 2: the current instances without a track try the candidates, newest entry first.

    Args:
        candidates: the candidate entries, oldest first.
        similarities: per entry, [k_entry, K_current] sigmoid similarities.
        tracks: per current instance (score order), its track id or None; filled in place.

    Returns:
        The candidate entries left (taken instances leave their entry, empty entries go).
    """
    left = list(candidates)
    for c in range(len(candidates) - 1, -1, -1):
        if None not in tracks:
            break
        entry, sim = candidates[c], similarities[c]
        taken: set[int] = set()
        for i, track in enumerate(tracks):
            if track is None:
                row = best_free(sim[:, i], taken, threshold)
                if row is not None:
                    taken.add(row)
                    tracks[i] = entry.tracks[row]
        if taken:
            rest = [r for r in range(len(entry.tracks)) if r not in taken]
            if rest:
                rows = entry.queries[to_device(rest, entry.queries.device, torch.int64)]
                left[c] = Candidate(entry.frame, rows, [entry.tracks[r] for r in rest])
            else:
                left[c] = None
    return [entry for entry in left if entry is not None]
