"""Pick, per budget, the member of a family that measures within 10 % under the budget.

Members are priced by the latency table. With a timer, those predicted up to SLACK x the budget are worth timing
(a table can be that far off for one family: it prices ops summed, a family is one shape of student). They are
timed end to end a few at a time (`count`): first the largest predicted inside the window, then those whose
prediction, corrected by the median measured / predicted ratio so far, is nearest the window's middle, among the
members between the slowest one measured too fast and the fastest one measured over the budget. The largest
predicted one that measures in [0.9, 1.0] x budget wins once a second timing confirms it: the slower of its two
timings counts (on a shared machine one timing can read 15 % fast, and a fit on a lucky one is no fit), and one
the second timing puts out of the window counts as measured there. When nothing is left between a member
measured too fast and one measured over, or the rounds run out, no member fits and the choice says so in one
sentence naming the closest one. Without a timer (a table for another machine) the prediction stands in for the
measurement.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from nasbert.baselines.registry import Member

WINDOW = 0.9  # a baseline measures in [WINDOW, 1] x its budget
SLACK = 1.25  # with a timer, members predicted up to SLACK x the budget may still measure under it


@dataclass
class Priced:
    member: Member
    predicted_ms: float
    measured_ms: float | None = None

    @property
    def label(self) -> str:
        """What sentences name it by, and what tells members apart: the arch (and a narrower FFN's ratio)."""
        return self.member.label

    @property
    def latency_ms(self) -> float:
        """Measured where it was timed, else predicted."""
        return self.measured_ms if self.measured_ms is not None else self.predicted_ms


@dataclass
class Choice:
    family: str
    budget_ms: float
    chosen: Priced | None  # None: no member fits
    note: str
    closest: Priced | None = None  # where none fits: the member nearest the window (measured, else predicted)


def choose(family: str, members: list[Priced], budget_ms: float, time_member: Callable[[Member], float] | None,
           count: int = 3, tightenings: int = 4,
           unmeasured: str = "the latency table is for another machine or settings") -> Choice:
    """The member of `members` (one family, priced) to compare at `budget_ms`; see the module docstring.
    `unmeasured` says why, when `time_member` is None."""
    reachable = [m for m in members if m.predicted_ms <= (budget_ms if time_member is None else SLACK * budget_ms)]
    if not reachable:
        smallest = min(members, key=lambda m: m.predicted_ms)
        return Choice(family, budget_ms, None, f"no {family} student is predicted within {budget_ms:.3f} ms: the "
                      f"smallest, {smallest.label}, is predicted {smallest.predicted_ms:.3f} ms", smallest)
    if time_member is None:
        best = max(reachable, key=lambda m: m.predicted_ms)
        share = best.predicted_ms / budget_ms
        if share >= WINDOW:
            return Choice(family, budget_ms, best, f"predicted {best.predicted_ms:.3f} ms ({share:.2f} x the budget); "
                          f"not measured: {unmeasured}")
        return Choice(family, budget_ms, None, f"no {family} student is predicted within 10 % under {budget_ms:.3f} "
                      f"ms: the closest, {best.label}, is predicted {best.predicted_ms:.3f} ms ({share:.2f} x the "
                      "budget)", best)
    measured: list[Priced] = []
    confirmed: set[str] = set()  # archs timed twice
    ratio = 1.0  # measured / predicted over the members timed so far (median)
    for _ in range(tightenings + 1):
        batch = _next_to_time(reachable, measured, ratio, budget_ms, count)
        if not batch:
            break
        for m in batch:
            m.measured_ms = time_member(m.member)
        measured += batch
        best = _confirmed_best(measured, budget_ms, time_member, confirmed)
        if best is not None:
            share = best.measured_ms / budget_ms
            return Choice(family, budget_ms, best, f"measured {best.measured_ms:.3f} ms ({share:.2f} x the budget, "
                          f"the slower of two timings), predicted {best.predicted_ms:.3f} ms")
        ratio = statistics.median(m.measured_ms / m.predicted_ms for m in measured)
    closest = min(measured, key=lambda m: (m.measured_ms > budget_ms, abs(m.measured_ms - budget_ms)))
    return Choice(family, budget_ms, None, f"no {family} student measured within 10 % under the {budget_ms:.3f} ms "
                  f"budget: the closest, {closest.label}, measured {closest.measured_ms:.3f} ms "
                  f"({closest.measured_ms / budget_ms:.2f} x the budget)", closest)


def _confirmed_best(measured: list[Priced], budget_ms: float, time_member: Callable[[Member], float],
                    confirmed: set[str]) -> Priced | None:
    """The largest predicted member measured inside the window that a second timing keeps there (the slower of its
    two timings becomes its measurement); None when none is left."""
    while True:
        inside = [m for m in measured if WINDOW * budget_ms <= m.measured_ms <= budget_ms]
        if not inside:
            return None
        best = max(inside, key=lambda m: m.predicted_ms)
        if best.label in confirmed:
            return best
        best.measured_ms = max(best.measured_ms, time_member(best.member))
        confirmed.add(best.label)


def _next_to_time(members: list[Priced], measured: list[Priced], ratio: float, budget_ms: float,
                  count: int) -> list[Priced]:
    """Up to `count` untimed members worth timing next: only those predicted between the slowest member measured
    under the window and the fastest measured over the budget; inside the window by corrected prediction (largest
    first), then nearest its middle."""
    low = max((m.predicted_ms for m in measured if m.measured_ms < WINDOW * budget_ms), default=float("-inf"))
    high = min((m.predicted_ms for m in measured if m.measured_ms > budget_ms), default=float("inf"))
    left = [m for m in members if m.measured_ms is None and low < m.predicted_ms < high]
    middle = (1 + WINDOW) / 2 * budget_ms

    def order(m: Priced) -> tuple[bool, float]:
        corrected = m.predicted_ms * ratio
        inside = WINDOW * budget_ms <= corrected <= budget_ms
        return (not inside, -m.predicted_ms if inside else abs(corrected - middle))

    return sorted(left, key=order)[:count]
