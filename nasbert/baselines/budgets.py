"""Budgets that move with the machine (`--budget-teacher-ms T`): the budgets were set when the teacher measured T ms;
the teacher is timed again wherever students are timed against them, and each budget is scaled by (its latency
there) / T, so it stays the same share of the teacher.

Why: a 2-core VM ran every model 4-5 % slower on one day than on the day its budgets were set (README, the fourth
VM). Family members chosen that day against the budgets in ms came out 0.83-0.88 x the teacher's share, while the
searched students, chosen by a latency table profiled on the first day, came out 0.94-0.96 x: a 10 % window
measured in ms compares students of different speeds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from nasbert.latency.lut import LatencyTable


@dataclass(frozen=True)
class BudgetScale:
    teacher_ms: float  # the teacher timed here, now
    set_at_ms: float  # the teacher's latency when the budgets were set (--budget-teacher-ms)

    @property
    def factor(self) -> float:
        return self.teacher_ms / self.set_at_ms

    def scaled(self, budget_ms: float) -> float:
        return budget_ms * self.factor

    def text(self) -> str:
        """'budgets x 1.049: the teacher measures 16.050 ms here, 15.300 ms when they were set'."""
        return (f"budgets x {self.factor:.3f}: the teacher measures {self.teacher_ms:.3f} ms here, "
                f"{self.set_at_ms:.3f} ms when they were set")


def time_teacher(folder: str, table: LatencyTable, min_run_time_s: float = 1.0, rounds: int = 3,
                 timings: int = 2) -> float:
    """ms of the teacher's bare encoder (as `nasbert compare` loads it) under the table's conditions, runtime and
    precision, timed as `nasbert baselines` times its members; the mean of `timings` timings (one timing of a
    15 ms model on a shared 2-core machine can be 5 % off, and every budget moves with it)."""
    from nasbert.baselines.side_by_side import load_encoder
    from nasbert.latency.measure import gauge_reference_ms, measure_model_ms

    c = table.conditions
    model = load_encoder(folder)
    return statistics.mean(
        measure_model_ms(model, c.batch_size, c.seq_len, c.threads, c.device, c.dtype, min_run_time_s, rounds,
                         gauge_reference_ms(table), c.runtime, c.precision) for _ in range(timings))
