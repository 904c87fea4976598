"""Timings from a busy machine are refused, not stored as if they could be trusted.

A timing with T threads is only worth keeping if it had T cores to itself: on a machine where other jobs
hold the cores, a student measured 288.9 ms with 2 threads and 1.17 ms with 1 thread at the same moment,
and tables came out whose repeated timings disagreed by 700-7,300 %. So every timing command reads the
machine before it starts and before every timing (`MachineCheck`): the work other processes want right now
(runnable threads that are not ours, Linux /proc/loadavg; elsewhere the load average) against the cores this
process may use (its CPU affinity). It refuses (MachineBusyError, one sentence) to store a table, a
calibration, validation figures or a measured latency when

    other work left the timing's threads half a core short or more (median reading, before or while timing),
    repeated timings of one item disagree by more than MAX_SPREAD_PERCENT (median over items), or
    the speed gauge ran MAX_GAUGE_SLOWDOWN x slower than when the table was profiled,

and notes when the timing has fewer free cores than threads. On a machine noisy by nature (a shared CI
runner, the test suite) set NASBERT_ALLOW_BUSY=1: the same sentence is printed as a warning and the
timings are kept.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nasbert.errors import UserError

if TYPE_CHECKING:
    from nasbert.latency.measure import UsualSpeed

ALLOW_BUSY_ENV = "NASBERT_ALLOW_BUSY"  # set to 1: timings from a busy machine are kept, with a warning
MAX_SPREAD_PERCENT = 50.0  # kept rounds of one item disagreeing more (median over items): the machine was busy
MAX_GAUGE_SLOWDOWN = 1.5  # the gauge this much slower than when the table was profiled: the machine is busy


class MachineBusyError(UserError):
    """Timings that cannot be trusted: the machine was busy while they were taken."""


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _own_running_threads() -> int:
    """This process's threads that are running or runnable now (Linux)."""
    count = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the thread ended
            continue
        count += text[text.rindex(")") + 2] == "R"
    return count


def runnable_elsewhere(own_threads: int = 0) -> float | None:
    """Cores' worth of work other processes want right now, on the cores this process may use.

    Linux: runnable threads of the whole machine (/proc/loadavg) minus this process's own, scaled by the share
    of the machine's cores this process may use. Elsewhere: the 1-minute load average minus `own_threads`
    (what this process is taken to run meanwhile). None where the OS tells neither.
    """
    try:
        own = _own_running_threads()
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        try:
            running, own = os.getloadavg()[0], own_threads
        except (AttributeError, OSError):
            return None
    return max(0.0, running - own) * usable_cores() / (os.cpu_count() or 1)


@dataclass
class MachineCheck:
    """Whether a timing had the cores it needed: other work read before (`before`) and while (`sample`) it ran.

    A timing with `threads` threads (one on CUDA: the launching thread) needs that many free cores; it is
    refused when other work left it half a core short or more (the median reading), and told when it had
    fewer free cores than threads at all.
    """

    threads: int
    device: str = "cpu"
    cores: int = field(default_factory=usable_cores)
    before_load: float | None = None  # the median reading before timing
    readings: list[float] = field(default_factory=list)  # readings while timing

    @property
    def needed(self) -> int:
        return 1 if self.device.startswith("cuda") else min(self.threads, self.cores)

    @classmethod
    def before(cls, threads: int | None, device: str, what: str, samples: int = 5,
               interval_s: float = 0.04) -> MachineCheck:
        """Read the machine before timing `what` ('a latency table'); refuse right away if it is busy."""
        check = cls(int(threads or torch.get_num_threads()), device)
        readings = []
        for n in range(samples):
            if n:
                time.sleep(interval_s)
            reading = runnable_elsewhere()
            if reading is not None:
                readings.append(reading)
        check.before_load = float(np.median(readings)) if readings else None
        if check.threads > check.cores and not check.device.startswith("cuda"):
            print(f"note: timing with {check.threads} threads on {check.cores} usable core(s); the figures hold "
                  "for this oversubscribed machine, not for one with a core per thread", file=sys.stderr)
        check._judge(check.before_load, f"the machine is too busy to time {what}")
        return check

    def sample(self) -> None:
        """One reading while timing (this process's own threads are not counted)."""
        reading = runnable_elsewhere(own_threads=self.threads)
        if reading is not None:
            self.readings.append(reading)

    def _judge(self, load: float | None, verdict: str) -> None:
        """Refuse (saying `verdict`) if `load` leaves the timing half a core short; note any shortfall."""
        if load is None:
            return
        free = self.cores - load
        if free < self.needed - 0.5:
            refuse_or_warn(f"{verdict}: other processes want {load:.1f} of its {self.cores} cores, leaving "
                           f"{max(free, 0):.1f} for the {self.needed} the timing needs")
        elif free < self.threads and not self.device.startswith("cuda"):
            print(f"note: {free:.1f} of {self.cores} cores were free for {self.threads} timing threads",
                  file=sys.stderr)

    def require_steady(self, timed: UsualSpeed, what: str) -> None:
        """Refuse `what` if other work took the timing's cores, its rounds disagree, or the gauge ran slow."""
        if self.readings:
            self._judge(float(np.median(self.readings)), f"the machine got busy while timing {what}")
        if timed.repeatability_percent > MAX_SPREAD_PERCENT:
            refuse_or_warn(f"repeated timings of one item for {what} disagree by {timed.repeatability_percent:.0f} % "
                           f"(median over items; a steady machine stays within {MAX_SPREAD_PERCENT:.0f} %): the "
                           "machine was busy")
        if timed.gauge_median_ms is not None and timed.reference_ms > 0:
            slowdown = timed.gauge_median_ms / timed.reference_ms
            if slowdown > MAX_GAUGE_SLOWDOWN:
                refuse_or_warn(f"the machine ran {slowdown:.1f}x slower while timing {what} than when the table was "
                               f"profiled (speed gauge {timed.gauge_median_ms:.4f} ms vs {timed.reference_ms:.4f} "
                               "ms): it is busy")


def refuse_or_warn(problem: str) -> None:
    """MachineBusyError saying `problem` and what to do; only a warning where NASBERT_ALLOW_BUSY=1."""
    if os.environ.get(ALLOW_BUSY_ENV, "") not in ("", "0"):
        print(f"warning: {problem}; kept anyway because {ALLOW_BUSY_ENV} is set", file=sys.stderr)
        return
    raise MachineBusyError(f"{problem}; nothing was stored: run it again when the machine is idle (or set "
                           f"{ALLOW_BUSY_ENV}=1 where it is always this noisy)")
