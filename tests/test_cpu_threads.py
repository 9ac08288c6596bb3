"""The CPU thread governor: /proc/stat parsing, the decision rule, and that a busy neighbour is really seen."""

import subprocess
import sys
import time

import pytest

from core import cpu_threads
from core.cpu_threads import CpuSample, ThreadGovernor, governed, others_busy_cores, read_proc_stat, threads_for

STAT = """cpu  300 10 100 5000 20 0 5 0 0 0
cpu0 100 0 50 2500 10 0 5 0 0 0
cpu1 200 10 50 2500 10 0 0 7 30 0
intr 12345 0 0
ctxt 999
"""


def test_proc_stat_busy_time_sums_the_watched_cpus_without_idle_or_iowait():
    tick = cpu_threads._TICK_S
    assert read_proc_stat(STAT, None) == pytest.approx((155 + 267) * tick)  # cpu1: user+nice+sys+steal
    assert read_proc_stat(STAT, {0}) == pytest.approx(155 * tick)
    assert read_proc_stat(STAT, {1}) == pytest.approx(267 * tick)


@pytest.mark.parametrize("text", ["", "cpu  1 2 3 4\n", "cpu0 a b c d\n", "cpu0 1 2\n"])
def test_text_that_is_not_proc_stat_is_refused(text):
    with pytest.raises(ValueError, match="/proc/stat"):
        read_proc_stat(text, None)


def test_cpus_outside_the_affinity_mask_are_refused_when_none_is_listed():
    with pytest.raises(ValueError, match=r"CPUs \[5\]"):
        read_proc_stat(STAT, {5})


def test_others_load_is_the_machine_s_busy_time_less_this_process_s():
    a = CpuSample(wall=10.0, busy=100.0, own=5.0)
    b = CpuSample(wall=12.0, busy=103.0, own=6.0)  # 3 core-seconds busy, 1 of them ours, over 2 s
    assert others_busy_cores(a, b) == pytest.approx(1.0)
    assert others_busy_cores(a, CpuSample(wall=12.0, busy=100.5, own=6.0)) == 0.0  # clock skew: never below 0
    assert others_busy_cores(a, a) == 0.0


@pytest.mark.parametrize(("free", "most", "want"), [
    (2.0, 2, 2), (1.8, 2, 2), (1.7, 2, 1), (1.0, 2, 1), (0.2, 2, 1), (0.0, 4, 1), (15.9, 8, 8), (5.5, 8, 5)])
def test_threads_follow_the_free_cores_within_one_and_the_starting_count(free, most, want):
    assert threads_for(free, most) == want


class FakeMachine:
    """Two cores; ``load`` cores busy with other processes; this process busy ``own_rate`` cores."""

    cpu_count = 2

    def __init__(self):
        self.t = 0.0
        self.busy = 0.0
        self.own = 0.0
        self.load = 0.0
        self.own_rate = 1.0

    def clock(self):
        return self.t

    def advance(self, seconds):
        self.t += seconds
        self.own += self.own_rate * seconds
        self.busy += (self.own_rate + self.load) * seconds

    def sample(self):
        return CpuSample(self.t, self.busy, self.own)


def test_the_governor_drops_threads_under_load_and_restores_them_when_it_ends():
    machine, applied = FakeMachine(), []
    gov = ThreadGovernor(2, sampler=machine, set_threads=applied.append, interval_s=1.0)
    for _ in range(8):  # idle neighbours, our own work at 2 cores: keeps 2, sets nothing
        machine.advance(0.25)
        assert gov.tick() == 2
    machine.load, machine.own_rate = 1.2, 0.8
    machine.advance(0.5)
    assert gov.tick() == 2 and applied == []  # not before a whole interval has been measured
    machine.advance(0.6)
    assert gov.tick() == 1 and applied == [1]
    machine.load, machine.own_rate = 0.1, 1.0
    machine.advance(1.1)
    assert gov.tick() == 2 and applied == [1, 2]
    assert [c.threads for c in gov.changes] == [1, 2] and gov.changes[0].others == pytest.approx(1.2)
    assert "then 1 at" in gov.summary()
    machine.load = 1.5
    machine.advance(1.1)
    gov.tick()
    gov.restore()
    assert applied == [1, 2, 1, 2] and gov.threads == 2


def test_the_count_is_left_alone_where_the_user_fixed_it_or_the_gpu_works(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert ThreadGovernor.for_run("cpu", threads=3) is None
    assert ThreadGovernor.for_run("cuda:0") is None
    assert isinstance(ThreadGovernor.for_run("cpu"), ThreadGovernor)  # this project's CI is Linux
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ThreadGovernor.for_run("cpu") is None


def test_a_machine_without_proc_stat_runs_at_torch_s_count(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_threads, "PROC_STAT", tmp_path / "missing")
    monkeypatch.setattr(cpu_threads.ProcStatSampler.__init__, "__defaults__", (tmp_path / "missing",))
    assert ThreadGovernor.for_run("cpu") is None


def test_governed_ticks_once_before_each_frame():
    machine = FakeMachine()
    ticks = []
    gov = ThreadGovernor(2, sampler=machine, set_threads=lambda n: None)
    gov.tick = lambda: ticks.append(len(ticks))
    assert list(governed(iter("abc"), gov)) == ["a", "b", "c"] and len(ticks) == 3
    assert list(governed(iter("ab"), None)) == ["a", "b"]


def test_a_busy_neighbour_process_is_seen_and_this_process_s_own_work_is_not():
    sampler = cpu_threads.ProcStatSampler()
    a = sampler.sample()
    end = time.monotonic() + 0.6
    while time.monotonic() < end:  # our own busy core: in the machine's busy time and in ours
        pass
    b = sampler.sample()
    own = b.own - a.own
    assert own >= 0.3
    assert b.busy - a.busy >= own - 0.05  # /proc/stat counts our work too (10 ms ticks)
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the child's start-up
        a = sampler.sample()
        time.sleep(1.0)
        b = sampler.sample()
    finally:
        child.kill()
        child.wait()
    assert others_busy_cores(a, b) >= 0.6  # the spinning child: about one core
