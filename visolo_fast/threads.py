"""How many threads torch's CPU ops use while a live run steps: a plan at the start and a
controller that adapts the count to the measured step time.

torch's OpenMP threads (libgomp) spin while they wait for work. On an idle machine that
makes all the cores the fastest choice; beside other busy programs a spinning thread that
loses its core stalls the others, and one thread can be several times faster than two.
OpenMP reads ``OMP_*`` / ``GOMP_*`` once, when torch loads (before any of this package's
code runs), so the count is what can still be changed: :class:`ThreadController` runs the
count whose recent step time is lowest and re-probes the others now and then.

Nothing here changes a setting at import; only a :class:`ThreadController` calls
``torch.set_num_threads`` (and :meth:`ThreadController.close` restores the count it found).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import statistics

import torch

#: The variables with which a user fixes or tunes OpenMP's threads: any of them set, the
#: count is the user's (torch's count, which honours them), not adapted.
USER_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; ``os.cpu_count()`` where the
    platform has no affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def candidates(cores: int, torch_threads: int) -> tuple[int, ...]:
    """The thread counts worth trying on ``cores`` usable cores, most first: all of them; one
    fewer (a core left to the decoders and the rest of the process) from 3 cores up; half;
    one (the fastest beside busy programs); and torch's own default count (the physical
    cores where it counts those)."""
    counts = {cores, 1, max(1, cores // 2), min(torch_threads, cores)}
    if cores > 2:
        counts.add(cores - 1)
    return tuple(sorted(counts, reverse=True))


@dataclasses.dataclass(frozen=True)
class ThreadPlan:
    """The counts a run may use (``counts[0]`` first) and, when there is only one, why."""

    counts: tuple[int, ...]
    reason: str = ""  # why the count is fixed ("" when adaptive)
    apply: bool = True  # False: the count is torch's already, left as it is

    @property
    def adaptive(self) -> bool:
        return len(self.counts) > 1

    def describe(self) -> str:
        """One line for the start of a run: what was chosen, and how to change it."""
        if self.adaptive:
            between = ", ".join(str(c) for c in self.counts[:-1]) + f" and {self.counts[-1]}"
            return (f"adaptive between {between} (the step's time decides; --threads N or OMP_NUM_THREADS=N "
                    f"fixes it)")
        return f"{self.counts[0]} ({self.reason})"


def plan_threads(threads: int | None = None, device: str | torch.device = "cpu") -> ThreadPlan:
    """The plan of a run on ``device``: ``threads`` (an explicit option) if given; else
    torch's count, fixed, when the user set one of :data:`USER_VARIABLES` or the network
    runs on a GPU or there is one usable core; else adaptive between :func:`candidates`."""
    if threads is not None:
        return ThreadPlan((threads,), "--threads")
    current = torch.get_num_threads()
    given = [f"{name}={os.environ[name]}" for name in USER_VARIABLES if os.environ.get(name)]
    if given:
        return ThreadPlan((current,), f"torch's count with {', '.join(given)}: the user's setting, not adapted",
                          apply=False)
    if torch.device(device).type != "cpu":
        return ThreadPlan((current,), f"torch's count; the network runs on {torch.device(device).type}, not adapted",
                          apply=False)
    cores = usable_cores()
    if cores == 1:
        return ThreadPlan((current,), "one usable core", apply=False)
    return ThreadPlan(candidates(cores, current))


class ThreadController:
    """Chooses torch's thread count from the measured time of each step.

    Feed it every step's wall time with :meth:`record` (the count that ran the step is
    :attr:`threads`; the next step runs with what :attr:`threads` is after the call). It
    depends on the times only, so a scripted sequence of times gives the same decisions.

    - The first ``warmup`` steps (one-time costs) are not counted. Then it runs the first
      count for ``probe_steps`` steps and probes each other count for as many: a *round*.
    - A round compares the median of each probed count's steps with the median of the
      current count's last ``probe_steps`` steps and moves to the fastest if it is faster
      by more than ``margin`` (a fraction); a probed step slower than ``abort`` times the
      current median ends that count's probe at once (one step tells enough).
    - Rounds come back every ``interval`` steps on the chosen count: ``first_interval``
      after a change, doubling after each round that keeps the count, up to
      ``max_interval``. When the chosen count's median gets ``slow`` times slower than
      when it was chosen or last confirmed (other programs started), a round comes at
      once.

    The cost is bounded: a probed count that is slow beside busy programs costs one step
    (its probe is aborted), one that is not costs ``probe_steps`` steps at most ``abort``
    times slower than the chosen count. With the defaults the rounds after a change come
    after 30, 60, 120, 240 and 480 steps, then every 480 steps (after the first round,
    which keeps the count, from 60). A round out of turn needs the median of the chosen
    count's last ``probe_steps`` steps ``slow`` times its median at the last round, and
    one that keeps the count makes that slower median the reference: after a round in
    turn, at most log(slowdown) / log(slow) of them follow (slowdown: the slowest median
    over the reference).
    """

    def __init__(self, plan: ThreadPlan, warmup: int = 2, probe_steps: int = 3, margin: float = 0.1,
                 abort: float = 2.0, slow: float = 1.5, first_interval: int = 30, max_interval: int = 480):
        self.plan = plan
        self.steps: collections.Counter[int] = collections.Counter()  # steps run at each count
        self.rounds = self.changes = 0
        self._found = torch.get_num_threads()
        self._warmup, self._probe_steps, self._margin = warmup, probe_steps, margin
        self._abort, self._slow = abort, slow
        self._first_interval, self._max_interval = first_interval, max_interval
        self._chosen = plan.counts[0]
        self._recent: collections.deque[float] = collections.deque(maxlen=probe_steps)  # the chosen count's
        self._reference: float | None = None  # the chosen count's median when chosen or last confirmed
        self._interval, self._since = first_interval, 0
        self._queue: list[int] = []  # the counts still to probe in this round
        self._probed: dict[int, list[float]] = {}  # this round's probe times
        self._base = 0.0  # the chosen count's median at the round's start
        self.threads = self._found
        if plan.apply:
            self._use(self._chosen)

    def _use(self, count: int) -> None:
        if count != self.threads:
            torch.set_num_threads(count)
            self.threads = count

    def record(self, seconds: float) -> None:
        """The step just run took ``seconds`` (wall time) with :attr:`threads` threads."""
        self.steps[self.threads] += 1
        if not self.plan.adaptive:
            return
        if self._warmup:
            self._warmup -= 1
            return
        if self._queue:
            self._probe(seconds)
            return
        self._recent.append(seconds)
        self._since += 1
        if len(self._recent) < self._probe_steps:
            return
        median = statistics.median(self._recent)
        # The first count measured, or slower than it was (other programs started), or due.
        if self._reference is None or median > self._slow * self._reference or self._since >= self._interval:
            self._start_round(median)

    def _start_round(self, median: float) -> None:
        self.rounds += 1
        self._base = median
        self._queue = [c for c in self.plan.counts if c != self._chosen]
        self._probed = {c: [] for c in self._queue}
        self._use(self._queue[0])

    def _probe(self, seconds: float) -> None:
        count = self._queue[0]
        times = self._probed[count]
        times.append(seconds)
        if seconds > self._abort * self._base or len(times) == self._probe_steps:
            self._queue.pop(0)
            if self._queue:
                self._use(self._queue[0])
            else:
                self._end_round()

    def _end_round(self) -> None:
        # An aborted probe has fewer than probe_steps times: it lost.
        done = {c: statistics.median(t) for c, t in self._probed.items() if len(t) == self._probe_steps}
        best = min(done, key=done.get, default=None)
        if best is not None and done[best] < (1 - self._margin) * self._base:
            self._chosen, self._reference, self._interval = best, done[best], self._first_interval
            self._recent = collections.deque(self._probed[best], maxlen=self._probe_steps)
            self.changes += 1
        else:
            self._reference = self._base
            self._interval = min(2 * self._interval, self._max_interval)
        self._since = 0
        self._use(self._chosen)

    def summary(self) -> str:
        """How many steps ran at each count (and, when adaptive, the rounds and changes)."""
        counts = ", ".join(f"{n} at {c}" for c, n in sorted(self.steps.items(), reverse=True)) or "no step"
        if not self.plan.adaptive:
            return f"threads: {counts} ({self.plan.reason})"
        return f"threads: steps {counts} ({self.rounds} probe rounds, {self.changes} changes)"

    def close(self) -> None:
        """Gives torch back the count it had when this controller was made."""
        self._use(self._found)
