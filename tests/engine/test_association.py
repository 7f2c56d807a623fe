"""Track association (spec section 6): the greedy rules on small matrices, then whole
scripted videos built to continue, lose and re-identify, start, and contend for tracks."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine.scripted import Obj, ScriptedNet, blank_frames
from visolo_fast import Tracker
from visolo_fast.engine.association import (Candidate, CandidateRows, match_candidate_rows, match_candidates,
                                            match_previous)

THR = 0.1


def test_match_previous_takes_the_best_free_row_above_threshold():
    sim = np.array([[0.9, 0.8, 0.05],
                    [0.5, 0.7, 0.09],
                    [0.2, 0.6, 0.05]], np.float32)
    # column 0 takes row 0; column 1 prefers row 0 (taken) -> row 1; column 2: nothing >= 0.1
    assert match_previous(sim, THR) == [0, 1, None]
    assert match_previous(np.array([[0.1]], np.float32), THR) == [0]  # the threshold is inclusive
    assert match_previous(np.zeros((0, 2), np.float32), THR) == [None, None]


def test_match_candidates_newest_entry_first_and_entries_shrink():
    old = Candidate(frame=3, queries=torch.zeros(2, 4), tracks=[7, 8])
    new = Candidate(frame=5, queries=torch.ones(1, 4), tracks=[9])
    # current instances 0 and 1 are unmatched; both resemble track 9 (newest entry) and track 7
    sims = [np.array([[0.8, 0.9], [0.0, 0.0]], np.float32), np.array([[0.5, 0.6]], np.float32)]
    tracks = [None, None]
    left = match_candidates([old, new], sims, tracks, THR)
    # the newest entry first: instance 0 takes track 9; instance 1 then takes 7 from the old entry
    assert tracks == [9, 7]
    assert [(c.frame, c.tracks) for c in left] == [(3, [8])]
    assert left[0].queries.shape == (1, 4)


def test_match_candidates_leaves_matched_instances_alone():
    entry = Candidate(frame=1, queries=torch.zeros(1, 4), tracks=[4])
    tracks = [2, None]
    left = match_candidates([entry], [np.array([[0.95, 0.05]], np.float32)], tracks, THR)
    assert tracks == [2, None] and left == [entry]


def run(script):
    tracker = Tracker(ScriptedNet(script), keep_video=True)
    results = []
    for frame in blank_frames(len(script)):
        results.append(tracker.step(frame))
    return tracker, results


A = Obj(grid=1, identity=0, box=(0, 0, 4, 4))
B = Obj(grid=4, identity=1, box=(4, 6, 8, 12))
C = Obj(grid=2, identity=2, box=(0, 8, 3, 12))
# Where each object's mask lies in the 24 x 40 output frames (its centre, row and column).
CENTRES = {"A": (6, 6), "B": (18, 30), "C": (4, 33)}


def name(mask: torch.Tensor) -> str:
    ys, xs = mask.nonzero(as_tuple=True)
    y, x = ys.float().mean().item(), xs.float().mean().item()
    return min(CENTRES, key=lambda k: (CENTRES[k][0] - y) ** 2 + (CENTRES[k][1] - x) ** 2)


def tracks_by_object(results) -> list[dict[str, int]]:
    """Per frame: object name -> track id."""
    return [{name(m): int(t) for t, m in zip(r.track_ids, r.masks)} for r in results]


def test_tracks_continue():
    tracker, results = run([[A, B]] * 5)
    frames = tracks_by_object(results)
    assert sorted(frames[0].values()) == [0, 1] and tracker.num_tracks == 2
    assert frames == [frames[0]] * 5


def test_lost_track_is_reidentified_from_a_candidate():
    # A disappears for two frames, then comes back: the candidate entry of the frame A was
    # last seen in gives it its old track.
    tracker, results = run([[A, B], [A, B], [B], [B], [A, B], [A, B]])
    frames = tracks_by_object(results)
    a, b = frames[0]["A"], frames[0]["B"]
    assert frames == [{"A": a, "B": b}] * 2 + [{"B": b}] * 2 + [{"A": a, "B": b}] * 2
    assert tracker.num_tracks == 2
    assert tracker._candidates == []  # A's entry was used up


def test_lost_track_stays_a_candidate_until_it_returns():
    tracker, results = run([[A, B], [B], [B], [B]])
    frames = tracks_by_object(results)
    assert [(c.frame, c.tracks) for c in tracker._candidates] == [(0, [frames[0]["A"]])]


def test_new_object_gets_a_new_track():
    tracker, results = run([[A], [A], [A, C], [A, C]])
    assert tracks_by_object(results) == [{"A": 0}] * 2 + [{"A": 0, "C": 1}] * 2
    assert tracker.num_tracks == 2


def test_two_instances_compete_for_one_track():
    # Frame 1 shows A and a weaker look-alike of A elsewhere (where C would be): the
    # better-scored instance takes A's track, the other starts a new one.
    twin = Obj(grid=2, identity=0, box=C.box, score=0.6)
    tracker, results = run([[A], [A, twin], [A]])
    assert results[1].track_ids.tolist() == [0, 1]  # score order: A first
    assert tracks_by_object(results) == [{"A": 0}, {"A": 0, "C": 1}, {"A": 0}]
    # the look-alike lost its track at frame 2: a candidate now
    assert [(c.frame, c.tracks) for c in tracker._candidates] == [(1, [1])]


def test_unmatched_previous_instances_become_one_candidate_entry():
    tracker, results = run([[A, B, C], [B], [B]])
    first = tracks_by_object(results)[0]
    assert [(c.frame, sorted(c.tracks)) for c in tracker._candidates] == [(0, sorted([first["A"], first["C"]]))]
    assert tracker._candidates[0].queries.shape == (2, 65)  # their query embeddings, not their frame


def test_a_frame_without_instances_loses_every_track():
    tracker, results = run([[A, B], [], [A, B]])
    frames = tracks_by_object(results)
    assert frames[1] == {} and frames[2] == frames[0]  # both re-identified from the one entry
    assert tracker._candidates == []


def entry_loop(entries: list[np.ndarray], tracks: list, threshold: float) -> list[list[int]]:
    """Spec section 6, step 2, as written: the entries newest first, each unmatched instance
    (score order) takes the best free row of the entry; returns each entry's rows taken."""
    taken_rows: list[list[int]] = [[] for _ in entries]
    for c in range(len(entries) - 1, -1, -1):
        if None not in tracks:
            break
        sim, taken = entries[c], set()
        for i, track in enumerate(tracks):
            if track is None:
                order = np.argsort(-sim[:, i], kind="stable")
                for row in order:
                    if not sim[row, i] >= threshold:
                        break
                    if row not in taken:
                        taken.add(int(row))
                        tracks[i] = (c, int(row))
                        break
        taken_rows[c] = sorted(taken)
    return taken_rows


VALUES = st.sampled_from([0.0, 0.02, 0.0999, THR, THR, 0.35, 0.5, 0.5, 0.8, 0.99, 1.0, float("nan")])


@st.composite
def candidate_cases(draw):
    width = draw(st.integers(0, 5))
    sizes = draw(st.lists(st.integers(1, 4), max_size=6))
    entries = [np.array(draw(st.lists(st.lists(VALUES, min_size=width, max_size=width), min_size=k, max_size=k)),
                        np.float32).reshape(k, width) for k in sizes]
    tracks = draw(st.lists(st.sampled_from([None, None, 90]), min_size=width, max_size=width))
    return entries, tracks


@settings(max_examples=300, deadline=None)
@given(candidate_cases())
def test_candidate_rows_decide_as_the_entry_loop(case):
    """match_candidate_rows (all rows in one array, only the entries that reach the threshold
    visited) takes the same rows for the same instances as the loop over every entry, with
    ties, values at the threshold, NaN, and instances matched already."""
    entries, tracks = case
    expected_tracks = list(tracks)
    expected = entry_loop(entries, expected_tracks, THR)
    width = len(tracks)
    rows = np.concatenate(entries) if entries else np.zeros((0, width), np.float32)
    entry_of_row = np.repeat(np.arange(len(entries)), [e.shape[0] for e in entries]).astype(np.int64) * 3 + 5
    row_ids = [(c, r) for c, e in enumerate(entries) for r in range(e.shape[0])]
    got_tracks = list(tracks)
    taken = match_candidate_rows(rows, entry_of_row, np.arange(len(row_ids)), got_tracks, THR)
    assert [t if t is None or t == 90 else row_ids[t] for t in got_tracks] == expected_tracks
    assert [row_ids[r] for r in taken] == [(c, r) for c, rs in enumerate(expected) for r in rs]


def test_candidate_rows_keep_the_entries_in_order():
    """CandidateRows against a list of (frame, track, query) rows, through appends, removals
    (re-identified rows) and expiries; the buffer stays at most twice the rows it held."""
    rng = np.random.default_rng(0)
    store, model, frame, most = CandidateRows(torch.device("cpu")), [], 0, 0
    for step in range(400):
        frame += 1
        k = int(rng.integers(0, 4))
        queries = torch.randn(k, 3)
        store.append(frame, queries, list(range(10 * step, 10 * step + k)))
        model += [(frame, 10 * step + j, queries[j]) for j in range(k)]
        most = max(most, len(model))
        if model and rng.random() < 0.5:
            rows = np.sort(rng.choice(len(model), size=int(rng.integers(1, len(model) + 1)), replace=False))
            store.remove(rows)
            model = [m for i, m in enumerate(model) if i not in set(rows.tolist())]
        before = frame - int(rng.integers(2, 12))
        tracks, frames = store.expire(before)
        assert tracks.tolist() == [m[1] for m in model if m[0] < before]
        assert frames.tolist() == [m[0] for m in model if m[0] < before]
        model = [m for m in model if m[0] >= before]
        assert store.frames.tolist() == [m[0] for m in model] and store.tracks.tolist() == [m[1] for m in model]
        assert torch.equal(store.queries(), torch.stack([m[2] for m in model]) if model else torch.zeros(0, 3))
        assert [(c.frame, c.tracks) for c in store.entries()] == \
            [(f, [m[1] for m in model if m[0] == f]) for f in sorted({m[0] for m in model})]
    assert store.capacity <= max(16, 4 * most)
