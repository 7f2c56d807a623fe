"""Endless streams (VisoloConfig.max_lost_frames): a track lost for more than N frames stops
being a candidate and ends, reported once by the frame where that happens; the tracker's
per-frame work and state stay bounded however long the stream runs."""

import dataclasses

import numpy as np
import pytest
import torch

import visolo_fast as vf
from tests.engine.scripted import CONFIG, Obj, ScriptedNet, blank_frames
from tests.engine.sync_count import SyncCounter
from tests.engine.test_tracker import _tracker_state
from visolo_fast.engine.tracker import FrameResult, TrackSummary

A = Obj(grid=1, identity=0, box=(0, 0, 4, 4))
B = Obj(grid=4, identity=1, box=(4, 6, 8, 12), label=2, score=0.8)


def scripted(script, max_lost_frames, **kw) -> vf.Tracker:
    net = ScriptedNet(script)
    net.config = dataclasses.replace(CONFIG, max_lost_frames=max_lost_frames)
    return vf.Tracker(net, **kw)


def run(script, max_lost_frames, **kw) -> tuple[vf.Tracker, list[FrameResult]]:
    tracker = scripted(script, max_lost_frames, **kw)
    return tracker, [tracker.step(frame) for frame in blank_frames(len(script))]


def summary(s: TrackSummary) -> list[tuple]:
    return list(zip(s.track_ids.tolist(), s.labels.tolist(), s.first_frames.tolist(), s.last_frames.tolist()))


def test_config_checks_max_lost_frames():
    for bad in (0, -3, True, 2.5, "5"):
        with pytest.raises(ValueError, match=f"max_lost_frames must be None or an integer >= 1, got {bad!r}"):
            vf.VisoloConfig(max_lost_frames=bad)
    assert vf.VisoloConfig().max_lost_frames is None  # the official rule by default
    config = vf.VisoloConfig(max_lost_frames=1)
    assert vf.VisoloConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_a_track_lost_for_more_than_n_frames_ends_once(backend):
    """N = 2: B absent for 2 frames comes back with its track; absent for 3, it ends with the
    third (frame last seen + N + 1), reported once, and comes back as a new track."""
    script = [[A, B], [A, B], [A], [A], [A, B], [A], [A], [A], [A, B], [A, B]]
    tracker, results = run(script, 2, backend=backend)
    ids = [r.track_ids.tolist() for r in results]
    assert ids == [[0, 1], [0, 1], [0], [0], [0, 1], [0], [0], [0], [0, 2], [0, 2]]
    assert [r.index for r in results if r.ended.track_ids.numel()] == [7]
    ended = results[7].ended
    assert summary(ended) == [(1, 2, 0, 4)]  # track 1: label 2, first seen in frame 0, last in frame 4
    assert ended.scores.dtype == torch.float32 and ended.scores.device == tracker.device
    # its final category is the one the tracker keeps for it, and the official rule's
    official, _ = run(script[:8], None, backend=backend)
    assert torch.equal(ended.scores, official.track_categories()[0][1:2])
    scores, labels = tracker.track_categories()
    assert tracker.num_tracks == 3 and labels.tolist() == [0, 2, 2] and scores[1] == ended.scores[0]
    # the official rule keeps B's track for good
    _, official_results = run(script, None, backend=backend)
    assert [r.track_ids.tolist() for r in official_results][8] == [0, 1]
    assert all(r.ended.track_ids.numel() == 0 for r in official_results)
    # what never ended: A and B's new track, open at the end of the stream; flush reports nothing more
    assert tracker.flush() is None
    assert summary(tracker.open_tracks()) == [(0, 0, 0, 9), (2, 2, 8, 9)]
    assert torch.equal(tracker.open_tracks().scores, scores[[0, 2]])


def test_one_missed_frame_is_bridged_with_n_1():
    script = [[A, B], [A], [A, B], [A], [A], [A, B]]
    tracker, results = run(script, 1)
    assert [r.track_ids.tolist() for r in results] == [[0, 1], [0], [0, 1], [0], [0], [0, 2]]
    assert [(r.index, summary(r.ended)) for r in results if r.ended.track_ids.numel()] == [(4, [(1, 2, 0, 2)])]


def test_a_frame_without_instances_ends_every_track_together():
    tracker, results = run([[A, B], [], [], [A, B]], 1)
    assert [summary(r.ended) for r in results] == [[], [], [(0, 0, 0, 0), (1, 2, 0, 0)], []]
    assert results[3].track_ids.tolist() == [2, 3]
    assert tracker._candidates == [] and summary(tracker.open_tracks()) == [(2, 0, 3, 3), (3, 2, 3, 3)]


def random_script(seed: int, n: int, max_gap: int | None) -> list[list[Obj]]:
    """Objects (one per grid) that come and go; absences of at most ``max_gap`` frames, or
    any (None)."""
    rng = np.random.default_rng(seed)
    script: list[list[Obj]] = [[] for _ in range(n)]
    identity = 0
    for grid in range(CONFIG.num_grids):
        t = int(rng.integers(0, 4))
        while t < n:
            seen = int(rng.integers(1, 6))
            obj = Obj(grid=grid, identity=identity % 64, box=(grid, grid, grid + 2, grid + 3), label=grid % 4,
                      score=0.5 + 0.05 * grid)
            for _ in range(int(rng.integers(1, 4))):  # it leaves and comes back a few times
                for u in range(t, min(t + seen, n)):
                    script[u].append(obj)
                t += seen + int(rng.integers(1, max_gap + 1 if max_gap else 9))
            identity += 1
            t += int(rng.integers(1, 3))
    return [sorted(objs, key=lambda o: -o.score) for objs in script]


@pytest.mark.parametrize("seed", [0, 1])
def test_absences_within_the_limit_change_nothing(seed):
    """Where no object stays away for more than N frames, the capped tracker decides as the
    official rule, bit for bit, and ends no track before its object has left for longer."""
    script = random_script(seed, 60, max_gap=3)
    official, expected = run(script, None)
    capped, got = run(script, 3)
    for a, b in zip(expected, got):
        assert torch.equal(a.track_ids, b.track_ids) and torch.equal(a.scores, b.scores)
    for r in got:
        for track, last in zip(r.ended.track_ids.tolist(), r.ended.last_frames.tolist()):
            assert r.index == last + 4 and all(track not in g.track_ids.tolist() for g in got[last + 1:])
    for x, y in zip(official.track_categories(), capped.track_categories()):
        assert torch.equal(x, y)


@pytest.mark.parametrize("n", [1, 4])
def test_every_track_ends_once_with_its_span(n):
    script = random_script(7, 80, max_gap=None)
    tracker, results = run(script, n)
    seen: dict[int, list[int]] = {}
    for r in results:
        for track in r.track_ids.tolist():
            seen.setdefault(track, []).append(r.index)
    ended = {}
    for r in results:
        for track, label, first, last in summary(r.ended):
            assert track not in ended  # once
            assert (first, last) == (seen[track][0], seen[track][-1]) and r.index == last + n + 1
            ended[track] = label
    open_tracks = summary(tracker.open_tracks())
    assert {t for t, *_ in open_tracks}.isdisjoint(ended) and len(open_tracks) + len(ended) == tracker.num_tracks
    assert all((first, last) == (seen[t][0], seen[t][-1]) for t, _, first, last in open_tracks)
    assert all(len(results) - 1 - last <= n for *_, last in open_tracks)  # the others have ended
    assert len(ended) >= 10, "the script loses tracks for good"
    _, labels = tracker.track_categories()
    assert all(labels[t] == label for t, label in ended.items())


def test_a_frame_result_made_without_ended_has_none():
    result = FrameResult(0, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4, 4, dtype=torch.bool),
                         torch.zeros(0, dtype=torch.int64), torch.zeros(0))
    assert all(field.numel() == 0 for field in result.ended)


def visitors(n: int, period: int = 7) -> list[list[Obj]]:
    """A always; a new object every ``period`` frames, seen for one frame, never again."""
    return [[A, Obj(grid=3, identity=1 + (t // period) % 63, box=(4, 6, 8, 12))] if t % period == 3 else [A]
            for t in range(n)]


def test_state_stays_flat_with_the_cap_and_grows_without():
    """Objects that leave for good: with max_lost_frames = 5 the candidates, the slots and
    every other part of the state (but the 12 bytes each ended track leaves for
    track_categories) are the same at two frames of the same phase; without, the candidates
    grow by one row per departed object."""
    n = 300
    script = visitors(n)
    capped, official = scripted(script, 5), scripted(script, None)
    sizes, rows = {}, []
    for t, frame in enumerate(blank_frames(n)):
        capped.step(frame)
        official.step(frame)
        rows.append((len(capped._lost), len(official._lost)))
        if t + 1 in (262, 290):  # the same phase of the 7-frame cycle, past 256 (CPython shares small ints)
            objects, nbytes = _tracker_state(capped)
            finals = capped._final_scores, capped._final_labels
            sizes[t + 1] = (objects, nbytes - sum(f.untyped_storage().nbytes() for f in finals),
                            capped._lost.capacity, capped._counts.shape[0])
    assert max(r[0] for r in rows) == 1 and capped._lost.capacity <= 16 and capped._counts.shape[0] <= 8
    assert sizes[262] == sizes[290], sizes
    assert rows[-1][1] == len(range(3, n - 1, 7)) and official.num_tracks == capped.num_tracks
    assert capped._final_scores.shape[0] <= 2 * capped.num_tracks


def test_finish_reads_the_device_once_when_tracks_end():
    """The tracking half of a frame (Tracker.finish) makes one transfer to the host, also
    in the frames where tracks end, candidates are re-identified or new tracks start."""
    script = [[A, B], [A], [A, B], [A], [A], [A], [A, B], [], [B], [A, B]]
    tracker = scripted(script, 2)
    counts = []
    for frame in blank_frames(len(script)):
        frame_pass = tracker.engine.run([tracker.stream], tracker.prepare(frame))[0]
        with SyncCounter() as sync:
            result = tracker.finish(frame_pass, tuple(frame.shape[:2]))
        counts.append(dict(sync.counts))
        assert sync.total == 1, (result.index, counts[-1])
    assert tracker.num_tracks >= 3 and tracker.open_tracks().track_ids.numel() < tracker.num_tracks
