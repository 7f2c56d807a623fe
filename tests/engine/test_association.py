"""Track association (spec section 6): the greedy rules on small matrices, then whole
scripted videos built to continue, lose and re-identify, start, and contend for tracks."""

import numpy as np
import torch

from tests.engine.scripted import Obj, ScriptedNet, blank_frames
from visolo_fast import Tracker
from visolo_fast.engine.association import Candidate, match_candidates, match_previous

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
