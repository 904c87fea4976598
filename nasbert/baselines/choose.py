"""Pick, per budget, the member of a family that measures within 10 % under the budget.

Members are priced by the latency table; those predicted within the budget are measured end to end, largest
prediction first, a few at a time (`count`). The largest predicted one that measures in [0.9, 1.0] x budget wins.
When every one measured is over the budget, the table is trusted less by how much they were over (as
`nasbert search` does, `confirm_by_measurement`) and the next few under the tightened prediction are measured; when
the members measured straddle the window (one over, the next one under 0.9 x), or nothing is left, no member fits
and the choice says so in one sentence naming the closest one. Without a timer (a table for another machine) the
prediction stands in for the measurement.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from nasbert.baselines.registry import Member

WINDOW = 0.9  # a baseline measures in [WINDOW, 1] x its budget


@dataclass
class Priced:
    member: Member
    predicted_ms: float
    measured_ms: float | None = None

    @property
    def arch(self) -> str:
        return str(self.member.arch)


@dataclass
class Choice:
    family: str
    budget_ms: float
    chosen: Priced | None  # None: no member fits
    note: str
    closest: Priced | None = None  # where none fits: the member nearest the window (measured, else predicted)


def choose(family: str, members: list[Priced], budget_ms: float, time_arch: Callable[[str], float] | None,
           count: int = 3, tightenings: int = 4,
           unmeasured: str = "the latency table is for another machine or settings") -> Choice:
    """The member of `members` (one family, priced) to compare at `budget_ms`; see the module docstring.
    `unmeasured` says why, when `time_arch` is None."""
    fitting = sorted((m for m in members if m.predicted_ms <= budget_ms), key=lambda m: -m.predicted_ms)
    if not fitting:
        smallest = min(members, key=lambda m: m.predicted_ms)
        return Choice(family, budget_ms, None, f"no {family} student is predicted within {budget_ms:.3f} ms: the "
                      f"smallest, {smallest.arch}, is predicted {smallest.predicted_ms:.3f} ms", smallest)
    if time_arch is None:
        best = fitting[0]
        share = best.predicted_ms / budget_ms
        if share >= WINDOW:
            return Choice(family, budget_ms, best, f"predicted {best.predicted_ms:.3f} ms ({share:.2f} x the budget); "
                          f"not measured: {unmeasured}")
        return Choice(family, budget_ms, None, f"no {family} student is predicted within 10 % under {budget_ms:.3f} "
                      f"ms: the closest, {best.arch}, is predicted {best.predicted_ms:.3f} ms ({share:.2f} x the "
                      "budget)", best)
    measured: list[Priced] = []
    limit = budget_ms
    for _ in range(tightenings + 1):
        batch = [m for m in fitting if m.predicted_ms <= limit and m.measured_ms is None][:count]
        if not batch:
            break
        for m in batch:
            m.measured_ms = time_arch(m.arch)
        measured += batch
        inside = [m for m in measured if WINDOW * budget_ms <= m.measured_ms <= budget_ms]
        if inside:
            best = max(inside, key=lambda m: m.predicted_ms)
            share = best.measured_ms / budget_ms
            return Choice(family, budget_ms, best, f"measured {best.measured_ms:.3f} ms ({share:.2f} x the budget), "
                          f"predicted {best.predicted_ms:.3f} ms")
        if any(m.measured_ms < WINDOW * budget_ms for m in batch):
            break  # the rest are smaller still: the window lies between two members
        over = statistics.median(m.measured_ms / m.predicted_ms for m in measured)
        limit = min(limit, budget_ms / over) * 0.995
    closest = min(measured, key=lambda m: (m.measured_ms > budget_ms, abs(m.measured_ms - budget_ms)))
    return Choice(family, budget_ms, None, f"no {family} student measured within 10 % under the {budget_ms:.3f} ms "
                  f"budget: the closest, {closest.arch}, measured {closest.measured_ms:.3f} ms "
                  f"({closest.measured_ms / budget_ms:.2f} x the budget)", closest)
