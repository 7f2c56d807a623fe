"""visolo_fast.threads: the plan honours the user's OpenMP variables, the controller's
decisions on scripted step times (with torch's real thread count), the CLI says what it
chose and restores the count, and importing the package changes nothing."""

import itertools
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image

from tests.engine.lively import lively_net
from visolo_fast import save_model
from visolo_fast.cli import main
from visolo_fast.sample import sample_frames
from visolo_fast.threads import USER_VARIABLES, ThreadController, ThreadPlan, candidates

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST, SLOW, BUSY = 0.07, 0.12, 0.30  # step seconds: 2 threads idle, 1 thread, 2 threads beside busy programs


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def python(code: str, **env: str) -> str:
    """Runs ``code`` in a fresh Python with the OpenMP variables unset, then ``env`` set;
    returns its stdout."""
    clean = {k: v for k, v in os.environ.items() if k not in USER_VARIABLES}
    clean["PYTHONPATH"] = os.pathsep.join([ROOT, clean.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def drive(controller: ThreadController, seconds_at, steps: int) -> list[int]:
    """Feeds ``steps`` steps whose time is ``seconds_at(step, threads)``; returns the count each
    step ran with, checking that torch really ran with it."""
    ran = []
    for step in range(steps):
        threads = controller.threads
        assert torch.get_num_threads() == threads
        ran.append(threads)
        controller.record(seconds_at(step, threads))
    return ran


def runs(ran: list[int]) -> list[tuple[int, int]]:
    """(count, steps) of each run of equal counts."""
    return [(count, len(list(group))) for count, group in itertools.groupby(ran)]


def test_candidates():
    assert candidates(2, 2) == (2, 1)
    assert candidates(3, 3) == (3, 2, 1)
    assert candidates(4, 4) == (4, 3, 2, 1)
    assert candidates(16, 16) == (16, 15, 8, 1)
    assert candidates(16, 6) == (16, 15, 8, 6, 1)  # torch's own count (physical cores) is tried too


@pytest.mark.parametrize("name,value", [("OMP_NUM_THREADS", "1"), ("OMP_WAIT_POLICY", "PASSIVE"),
                                        ("GOMP_SPINCOUNT", "30000")])
def test_the_users_variable_fixes_torchs_count(name, value):
    code = ("import json, torch\n"
            "from visolo_fast.threads import ThreadController, plan_threads\n"
            "plan, before = plan_threads(), torch.get_num_threads()\n"
            "controller = ThreadController(plan)\n"
            "for _ in range(50): controller.record(0.1 if torch.get_num_threads() == 1 else 9.0)\n"
            "print(json.dumps([plan.counts, plan.describe(), before, torch.get_num_threads(), controller.summary()]))")
    counts, said, before, after, summary = json.loads(python(code, **{name: value}))
    assert counts == [before] and after == before  # torch's count (OMP_NUM_THREADS=1: one), never changed
    assert said == f"{before} (torch's count with {name}={value}: the user's setting, not adapted)"
    assert summary.startswith(f"threads: 50 at {before} (")


def test_the_plan_without_variables_adapts_and_an_explicit_count_wins():
    code = ("import json, os, torch\n"
            "from visolo_fast.threads import candidates, plan_threads, usable_cores\n"
            "out = [plan_threads().counts, list(candidates(usable_cores(), torch.get_num_threads())),\n"
            "       plan_threads(1).describe(), plan_threads(device='cuda').counts]\n"
            "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"  # one core left to this process
            "print(json.dumps(out + [plan_threads().describe()]))")
    adaptive, expected, explicit, cuda, one_core = json.loads(python(code))
    if len(os.sched_getaffinity(0)) > 1:
        assert adaptive == expected and len(adaptive) > 1
    assert explicit == "1 (--threads)"
    assert len(cuda) == 1  # the network on a GPU: torch's count, not adapted
    assert one_core.endswith("(one usable core)")
    # and an explicit count wins over the user's variable
    assert json.loads(python("import json\nfrom visolo_fast.threads import plan_threads\n"
                             "print(json.dumps(plan_threads(1).describe()))", OMP_NUM_THREADS="2")) == "1 (--threads)"


def test_info_advises(capsys):
    out = python("from visolo_fast.cli import main\nmain(['info'])", OMP_WAIT_POLICY="PASSIVE")
    line = next(line for line in out.splitlines() if line.startswith("CPU threads: "))
    assert re.fullmatch(r"CPU threads: \d+ usable cores, torch uses \d+; OMP_WAIT_POLICY=PASSIVE; segment on the "
                        r"CPU: \d+ \(torch's count with OMP_WAIT_POLICY=PASSIVE: the user's setting, not adapted\)",
                        line), line


def test_it_keeps_the_faster_count_and_backs_off_its_probes():
    controller = ThreadController(ThreadPlan((2, 1)))
    ran = drive(controller, lambda step, threads: FAST if threads == 2 else SLOW, 2000)
    # warm-up (2) and the first 3 steps at 2, the first probe of 1, then back to 2 with the
    # probes coming after 60, 120, 240 and 480 steps, then every 480 (max_interval)
    assert runs(ran)[:4] == [(2, 5), (1, 3), (2, 60), (1, 3)]
    gaps = [steps for count, steps in runs(ran)[2:-1] if count == 2]
    assert gaps == [60, 120, 240, 480, 480, 480]
    assert all(steps == 3 for count, steps in runs(ran) if count == 1)  # each probe: 3 steps, never longer
    assert ran.count(1) == 3 * controller.rounds and controller.changes == 0


def test_it_moves_to_one_thread_when_two_get_slow_and_back_when_they_are_fast_again():
    busy = range(1000, 2500)  # two busy programs start at step 1000 and stop at 2500

    def seconds(step, threads):
        return SLOW if threads == 1 else BUSY if step in busy else FAST

    controller = ThreadController(ThreadPlan((2, 1)))
    ran = drive(controller, seconds, 3500)
    assert ran[999] == 2 and ran[1000:1002] == [2, 2]  # two slow steps: 2 of the last 3 are slow
    assert ran[1002:1005] == [1, 1, 1]  # the round: 1 thread probed, faster by far, kept
    # while busy, each probe of 2 threads is one step (slower than twice the median: aborted),
    # coming after 30, 60, 120, 240, 480 steps, then every 480
    probes = [i for i in range(1005, 2500) if ran[i] == 2]
    assert all(ran[i + 1] == 1 for i in probes)
    assert [b - a for a, b in zip(probes, probes[1:])] == [61, 121, 241, 481, 481]
    assert probes[0] - 1005 == 30
    # back at 2 threads at the first probe after the programs stopped (at most max_interval + 1 steps later)
    back = next(i for i in range(2500, 3500) if ran[i] == 2)
    assert back - 2500 <= 481 and runs(ran[back:])[:2] == [(2, 33), (1, 3)]  # kept: 3 probed + 30, a probe of 1
    assert controller.changes == 2 and controller.threads == torch.get_num_threads() == 2


def test_one_slow_step_is_noise_two_start_a_round():
    def spikes(*at):
        return lambda step, threads: (1.0 if step in at else FAST) if threads == 2 else SLOW

    steady = drive(ThreadController(ThreadPlan((2, 1))), spikes(), 150)
    assert drive(ThreadController(ThreadPlan((2, 1))), spikes(100), 150) == steady
    ran = drive(ThreadController(ThreadPlan((2, 1))), spikes(100, 101), 150)
    # probed at once, and 1 thread was faster than those slow steps: kept until the next round
    # (30 steps), which finds 2 threads fast again
    assert steady[102:105] == [2, 2, 2] and ran[102:135] == [1] * 33 and ran[135:] == [2] * 15


def test_close_gives_back_torchs_count_and_a_fixed_plan_never_sets_it():
    torch.set_num_threads(3)
    controller = ThreadController(ThreadPlan((1, 2)))
    assert torch.get_num_threads() == 1
    controller.close()
    assert torch.get_num_threads() == 3
    fixed = ThreadController(ThreadPlan((3,), "the user's", apply=False))
    drive(fixed, lambda step, threads: 1.0, 20)
    assert torch.get_num_threads() == 3 and fixed.summary() == "threads: 20 at 3 (the user's)"


def test_importing_the_package_changes_no_thread_setting():
    code = ("import json, os, torch\n"
            "{imports}\n"
            "openmp = {{k: v for k, v in os.environ.items() if k.startswith(('OMP_', 'GOMP_', 'KMP_', 'MKL_'))}}\n"
            "print(json.dumps([torch.get_num_threads(), torch.get_num_interop_threads(), openmp]))")
    alone = json.loads(python(code.format(imports="")))
    with_package = json.loads(python(code.format(imports="import visolo_fast, visolo_fast.cli, visolo_fast.threads")))
    assert with_package == alone


def test_segment_says_what_it_chose_and_counts_the_steps(tmp_path, capsys):
    weights, frames = tmp_path / "lively.pt", tmp_path / "frames"
    save_model(lively_net(4), weights)
    frames.mkdir()
    for i, frame in enumerate(sample_frames(8, 72, 128)):
        Image.fromarray(frame).save(frames / f"{i}.png")
    before = torch.get_num_threads()
    argv = ["segment", str(frames), "--weights", str(weights), "--out", str(tmp_path / "out")]
    assert main(argv + ["--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "threads: 1 (--threads)\n" in out and "threads: 8 at 1 (--threads)\n" in out
    assert torch.get_num_threads() == before
    assert main(argv) == 0
    out = capsys.readouterr().out
    if len(os.sched_getaffinity(0)) > 1:
        assert "threads: adaptive between " in out
        summary = re.search(r"threads: steps (.*) \((\d+) probe rounds, \d+ changes\)\n", out)
        steps = [int(n) for n, _ in re.findall(r"(\d+) at (\d+)", summary.group(1))]
        assert sum(steps) == 8 and int(summary.group(2)) >= 1 and len(steps) >= 2  # the first round probed
    assert torch.get_num_threads() == before
