"""How many CPU threads torch may use while other processes share the machine.

torch's OpenMP workers run fastest when they spin briefly between operations (``core`` sets a short spin, see
``core/__init__.py``), but a spinning worker on a core that another busy process needs makes every operation
wait for a scheduler slice: on this project's 2-core machine, beside a 2-thread training-like load, a 60-frame
``vpp infer`` at PKR 0.4 took 23.6 s with two spinning threads and 8.9 s with two passive ones. So the number
of threads follows what the machine can give: :class:`ThreadGovernor` measures, about once a second, how many
cores *other* processes kept busy (``/proc/stat`` over the CPUs this process may run on, minus this process's
own CPU time) and sets ``torch.set_num_threads`` to the cores left, between 1 and the starting count.

It acts only when the thread count is not the user's: ``--threads N`` or an exported ``OMP_NUM_THREADS`` fixes
it, and so does a CUDA device (the GPU does the work) or a system without ``/proc/stat``.

    gov = ThreadGovernor.for_run("cpu")        # None when the count is fixed or cannot be measured
    for frame in governed(frames, gov):        # one tick per frame; a decision at most once per interval
        session.step(frame)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# /proc/stat counts in USER_HZ ticks
_TICK_S = 1.0 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


@dataclass(frozen=True)
class CpuSample:
    """Cumulative seconds: ``busy`` summed over the watched CPUs, ``own`` this process's CPU time, at ``wall``."""

    wall: float
    busy: float
    own: float


def _watched_cpus() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def read_proc_stat(text: str, cpus: set[int] | None) -> float:
    """Seconds the CPUs in ``cpus`` (all when None) were not idle, from the text of ``/proc/stat``.

    Busy = user + nice + system + irq + softirq + steal (guest time is already inside user and nice; idle and
    iowait are free time). Raises ValueError on text that is not /proc/stat's."""
    busy_ticks = 0
    found = 0
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        try:
            index = int(name[3:])
            values = [int(v) for v in fields]
        except ValueError as e:
            raise ValueError(f"{PROC_STAT}: unexpected line {line!r}") from e
        if cpus is not None and index not in cpus:
            continue
        if len(values) < 4:
            raise ValueError(f"{PROC_STAT}: unexpected line {line!r}")
        user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
        busy_ticks += user + nice + system + irq + softirq + steal
        found += 1
    if found == 0:
        raise ValueError(f"{PROC_STAT}: no per-CPU line for CPUs {sorted(cpus or [])}")
    return busy_ticks * _TICK_S


class ProcStatSampler:
    """Samples the machine's busy CPU time and this process's own (Linux)."""

    clock = staticmethod(time.monotonic)

    def __init__(self, path: Path = PROC_STAT) -> None:
        self.path = path
        self.cpus = _watched_cpus()
        self.sample()  # fails here, not in the middle of a run, where /proc/stat is missing or odd

    @property
    def cpu_count(self) -> int:
        return len(self.cpus) if self.cpus else (os.cpu_count() or 1)

    def sample(self) -> CpuSample:
        busy = read_proc_stat(self.path.read_text(), self.cpus)
        return CpuSample(wall=self.clock(), busy=busy, own=time.process_time())


def others_busy_cores(a: CpuSample, b: CpuSample) -> float:
    """Cores kept busy by other processes between two samples (never below 0)."""
    wall = b.wall - a.wall
    if wall <= 0:
        return 0.0
    return max(0.0, ((b.busy - a.busy) - (b.own - a.own)) / wall)


def threads_for(free_cores: float, max_threads: int) -> int:
    """Threads to use when ``free_cores`` are left by others: a core counts once a quarter of it is free
    beyond the whole ones below it (1.8 free -> 2, 1.6 -> 1), never fewer than 1 nor more than ``max_threads``."""
    return max(1, min(max_threads, int(free_cores + 0.25)))


@dataclass(frozen=True)
class ThreadChange:
    """One decision: at ``after_s`` seconds into the run, ``threads`` threads, others using ``others`` cores."""

    after_s: float
    threads: int
    others: float


class ThreadGovernor:
    """Keeps torch's intra-op thread count at the cores other processes leave free.

    Args:
        max_threads: the most threads to use (the count torch started with).
        sampler: an object with ``sample() -> CpuSample``, ``cpu_count`` and ``clock()`` (the clock of the
            samples' ``wall``; default: /proc/stat and ``time.monotonic``).
        set_threads: applies a count (default ``torch.set_num_threads``).
        interval_s: the shortest measuring window between two decisions.
    """

    def __init__(self, max_threads: int, *, sampler=None, set_threads: Callable[[int], None] | None = None,
                 interval_s: float = 1.0) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be >= 1, got {max_threads}")
        if set_threads is None:
            import torch

            set_threads = torch.set_num_threads
        self.max_threads = max_threads
        self.sampler = sampler if sampler is not None else ProcStatSampler()
        self.set_threads = set_threads
        self.interval_s = interval_s
        self.threads = max_threads
        self.changes: list[ThreadChange] = []
        self._start = self._last = self.sampler.sample()

    @classmethod
    def for_run(cls, device, threads: int | None = None, **kwargs) -> ThreadGovernor | None:
        """A governor for a run on ``device``, or None where the count is fixed: ``threads`` given (the user's
        ``--threads``), ``OMP_NUM_THREADS`` exported, a non-CPU device, or no /proc/stat to measure with."""
        if threads or os.environ.get("OMP_NUM_THREADS") or str(device).split(":")[0] != "cpu":
            return None
        import torch

        try:
            return cls(torch.get_num_threads(), **kwargs)
        except (OSError, ValueError):
            return None

    def tick(self) -> int:
        """Measure and decide if ``interval_s`` has passed since the last decision; returns the thread count."""
        if self.sampler.clock() - self._last.wall < self.interval_s:
            return self.threads  # the common case costs a clock read
        now = self.sampler.sample()
        others = others_busy_cores(self._last, now)
        self._last = now
        want = threads_for(self.sampler.cpu_count - others, self.max_threads)
        if want != self.threads:
            self.set_threads(want)
            self.threads = want
            self.changes.append(ThreadChange(round(now.wall - self._start.wall, 1), want, round(others, 2)))
        return self.threads

    def restore(self) -> None:
        """Back to ``max_threads`` (the end of a run: the next one starts from the full count)."""
        if self.threads != self.max_threads:
            self.set_threads(self.max_threads)
            self.threads = self.max_threads

    def summary(self) -> str:
        """One line for a profile: the decisions taken."""
        if not self.changes:
            return f"threads: {self.max_threads} throughout (auto; other processes left the cores free)"
        steps = ", ".join(f"{c.threads} at {c.after_s:.0f} s (others {c.others:.1f} cores)" for c in self.changes)
        return f"threads: started with {self.max_threads} (auto), then {steps}"


def governed(frames: Iterable, governor: ThreadGovernor | None) -> Iterator:
    """``frames`` with one ``governor.tick()`` before each (unchanged when ``governor`` is None)."""
    if governor is None:
        yield from frames
        return
    for frame in frames:
        governor.tick()
        yield frame
