"""The memory policy (spec section 3) and the grid-weight inputs (section 4)."""

import pytest
import torch

from tests.engine.scripted import Obj, ScriptedNet, blank_frames
from visolo_fast import Tracker
from visolo_fast.engine import MemoryBank
from visolo_fast.engine import frame as frame_module
from visolo_fast.model import visolo as model_module


def official_memory_lists(last: int) -> list[list[int]]:
    """The memory after each frame, by the official list operations (frames 0-2 appended,
    then append when n % 5 == 2, else drop the second-to-last entry)."""
    mem, history = [], []
    for n in range(last + 1):
        if n <= 2 or n % 5 == 2:
            mem = mem + [n]
        else:
            mem = mem[:-2] + [mem[-1], n]
        history.append(list(mem))
    return history


def stored(bank: MemoryBank) -> list[int]:
    """What the bank's buffers hold, slot by slot (each entry is its frame's index)."""
    return [int(bank.entry("frame", slot)) for slot in range(len(bank))]


def sources(bank: MemoryBank) -> list[int]:
    """The frames the next frame's grid weight compares it with."""
    return [bank.frames[slot] for slot in bank.weight_sources()]


def test_memory_policy_up_to_frame_40():
    bank = MemoryBank()
    for n, expected in enumerate(official_memory_lists(40)):
        bank.add(frame=torch.tensor(n))
        assert bank.frames == expected, f"after frame {n}"
        assert stored(bank) == expected
        if n >= 2:  # the spec's closed form (frame 1: [0, 1])
            assert expected == [0] + list(range(5, n - 1, 5)) + [n - 1, n], f"after frame {n}"


def test_memory_grows_one_entry_every_five_frames():
    sizes = [len(m) for m in official_memory_lists(40)]
    assert sizes[2] == 3 and sizes[40] == 3 + 7  # frames 7, 12, ..., 37 appended
    assert all(b - a in (0, 1) for a, b in zip(sizes, sizes[1:]))


@pytest.mark.parametrize("limit", [3, 4, 6])
def test_memory_limit(limit):
    """A capped memory: the official one until it is full, then frame 0, the newest
    long-term entries, the previous and the newest frame."""
    bank = MemoryBank(limit)
    for n, official in enumerate(official_memory_lists(60)):
        expected = official if len(official) <= limit else [0] + official[len(official) - limit + 1:]
        if n >= 2:
            assert sources(bank) == [expected[-2], expected[-3]], f"sources of frame {n}"
        bank.add(frame=torch.tensor(n))
        assert len(bank) <= limit and stored(bank) == bank.frames
        assert bank.frames == expected, f"after frame {n}"


def test_memory_limit_bad_values():
    for bad in (2, 0, -1, 3.0, True, "4"):
        with pytest.raises(ValueError, match="limit must be None or an integer >= 3"):
            MemoryBank(bad)


def test_grid_weight_sources():
    """Known before the frame runs (the fast engine's frame function takes them as an input)."""
    bank = MemoryBank()
    seen = []
    for n in range(23):
        seen.append(sources(bank))
        bank.add(frame=torch.tensor(n))
    assert seen[0] == [] and seen[1] == [0] and seen[2] == [1, 0] and seen[3] == [2, 0]
    # frame t: the previous frame, then the newest long-term entry (0, 5, 10, ...) at least two frames old
    for t in range(2, 23):
        assert seen[t] == [t - 1, max(5 * ((t - 2) // 5), 0)], f"frame {t}"


def test_buffers_double_and_reads_are_views():
    """The buffers grow by doubling (a power of two: the fixed-shape capacities), and a read
    is a view of them: nothing concatenates the stored frames."""
    bank = MemoryBank(fields={"keys": ((2, 3), torch.float32, torch.device("cpu"))})
    assert bank.capacity == 1 and bank.view("keys", 1).shape == (1, 2, 3)  # readable before the first frame
    capacities = []
    for n in range(40):
        bank.add(keys=torch.full((2, 3), float(n)))
        capacities.append(bank.capacity)
        assert [int(bank.entry("keys", s)[0, 0]) for s in range(len(bank))] == bank.frames
    assert capacities[:3] == [1, 2, 4] and set(capacities) == {1, 2, 4, 8, 16}
    assert all(c >= len(m) for c, m in zip(capacities, official_memory_lists(39)))
    view = bank.view("keys", 16)
    assert view.data_ptr() == bank.buffers["keys"].data_ptr() and view.shape == (16, 2, 3)
    with pytest.raises(ValueError, match=r"fields must be \['keys'\], got \['values'\]"):
        bank.add(values=torch.zeros(2, 3))


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_tracker_reads_the_policys_memory_and_weights(monkeypatch, backend):
    """The tracker hands the network the memory as it stands after the previous frame,
    and computes each frame's grid weight from the right earlier frames (both engines:
    the reference hands over stored features, the fast engine cached keys)."""
    n = 14
    script = [[Obj(grid=t % 6, identity=t, box=(0, 0, 4, 4))] for t in range(n)]
    net = ScriptedNet(script)
    S = net.config.num_grids
    seen_memory = []
    # Which frame each memory entry is: the identity of the object it shows (= its frame index).
    if backend == "reference":
        forward = net.forward_frame

        def spy_forward(images, memory=(), backend="auto"):
            seen_memory.append([int(e.frame_f.flatten(2)[0].amax(1).argmax()) for e in memory])
            return forward(images, memory, backend)

        net.forward_frame = spy_forward
    else:
        real_memory_read = model_module.memory_read

        def spy_memory_read(query, keys, values, residual, backend="auto", lengths=None):
            blocks = keys[0, :None if lengths is None else int(lengths[0])].split(S)  # one block of S keys per entry
            seen_memory.append([int(k[:, :-1].amax(0).argmax()) for k in blocks])
            return real_memory_read(query, keys, values, residual, backend, lengths=lengths)

        monkeypatch.setattr(model_module, "memory_read", spy_memory_read)
    weights = []
    real_grid_weight = frame_module.grid_weight

    def spy_grid_weight(query, keys, backend="auto"):
        weights.append((query, keys))
        return real_grid_weight(query, keys, backend)

    monkeypatch.setattr(frame_module, "grid_weight", spy_grid_weight)
    tracker = Tracker(net, backend=backend)
    for frame in blank_frames(n):
        tracker.step(frame)
    tracker.flush()
    history = official_memory_lists(n)
    assert tracker.memory_frames == history[n - 1]
    # The first frame reads itself: an empty memory (reference), its own keys (fast engine).
    assert seen_memory[0] == ([] if backend == "reference" else [0])
    for t in range(1, n):
        assert seen_memory[t] == history[t - 1], f"memory read by frame {t}"

    def frame_f(t):
        return forward_outputs[t].frame_f

    net2 = ScriptedNet(script)
    forward_outputs = [net2.forward_frame(None) for _ in range(n)]
    track = net.Tracking_branch
    # Every frame's (the first's is computed and not applied: the frame function runs alike for
    # every frame); a frame with one source takes it twice.
    assert len(weights) == n
    for t in range(1, n):
        query, keys = weights[t]
        sources = [0, 0] if t == 1 else [t - 1, max(5 * ((t - 2) // 5), 0)]
        torch.testing.assert_close(query, track.query(frame_f(t)), rtol=0, atol=0)
        expected = torch.stack([track.reference(frame_f(s)) for s in sources], dim=1)
        torch.testing.assert_close(keys, expected, rtol=0, atol=0, msg=f"grid weight of frame {t}")
