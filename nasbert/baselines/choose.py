"""Pick, per budget, the member of a family that measures within 10 % under the budget.

Members are priced by the latency table. With a timer, those predicted up to SLACK x the budget are worth timing
(a table can be that far off for one family: it prices ops summed, a family is one shape of student). They are
timed end to end a few at a time (`count`): first the largest predicted inside the window, then those whose
prediction, corrected by the median measured / predicted ratio so far, is nearest the window's middle, among the
members between the slowest one measured too fast (or the largest that fits so far) and the fastest one measured
over the budget. The largest predicted one that measures in [0.9, 1.0] x budget wins once a second timing
confirms it and no larger one is left untimed below the fastest measured over: the slower of its two
timings counts (on a shared machine one timing can read 15 % fast, and a fit on a lucky one is no fit), and one
the second timing puts out of the window counts as measured there. The search aims first at [0.9, HEADROOM] x
budget and only where nothing lands there at the whole window: a comparison times a dozen models interleaved,
and there a small student chosen at 0.98 x alone read 1.03-1.05 x (README, the fourth VM). When nothing is left
between a member measured too fast and one measured over, or the rounds run out, no member fits and the choice
says so in one sentence naming the closest one. Without a timer (a table for another machine) the prediction
stands in for the measurement.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from nasbert.baselines.registry import Member

WINDOW = 0.9  # a baseline measures in [WINDOW, 1] x its budget
SLACK = 1.25  # with a timer, members predicted up to SLACK x the budget may still measure under it
HEADROOM = 0.97  # aim under this x the budget first: room for the comparison's slower, interleaved timing


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


class SharedTimings:
    """One set of timings per student shape in a `baselines` run: the k-th time one choice asks about a member, it
    gets the k-th timing of that arch (and FFN ratio), timed only when no choice has asked that often before. Two
    families proposing the same student (uniform and width at one width), or two budgets, read the same figures,
    not two draws of the machine's noise (one such pair once read 0.96 x and over the budget in one run)."""

    def __init__(self, time_member: Callable[[Member], float]):
        self.time_member = time_member
        self.readings: dict[str, list[float]] = {}  # member label -> its timings, in the order they were made

    def for_one_choice(self) -> Callable[[Member], float]:
        """A timer for one (family, budget) choice."""
        asked: dict[str, int] = {}

        def time_member(member: Member) -> float:
            k = asked[member.label] = asked.get(member.label, -1) + 1
            readings = self.readings.setdefault(member.label, [])
            while len(readings) <= k:
                readings.append(self.time_member(member))
            return readings[k]

        return time_member


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
    for top in (HEADROOM, 1.0):  # the timings of the first pass count in the second
        best = _search(reachable, measured, confirmed, budget_ms, top * budget_ms, time_member, count, tightenings)
        if best is not None:
            share = best.measured_ms / budget_ms
            spare = "" if top == HEADROOM else (f"; none measured within [{WINDOW}, {HEADROOM}] x, so under "
                                                f"{1 - HEADROOM:.0%} is left for a slower timing")
            return Choice(family, budget_ms, best, f"measured {best.measured_ms:.3f} ms ({share:.2f} x the budget, "
                          f"the slower of two timings), predicted {best.predicted_ms:.3f} ms{spare}")
    closest = min(measured, key=lambda m: (m.measured_ms > budget_ms, abs(m.measured_ms - budget_ms)))
    return Choice(family, budget_ms, None, f"no {family} student measured within 10 % under the {budget_ms:.3f} ms "
                  f"budget: the closest, {closest.label}, measured {closest.measured_ms:.3f} ms "
                  f"({closest.measured_ms / budget_ms:.2f} x the budget)", closest)


def _search(reachable: list[Priced], measured: list[Priced], confirmed: set[str], budget_ms: float, top_ms: float,
            time_member: Callable[[Member], float], count: int, tightenings: int) -> Priced | None:
    """The largest predicted member confirmed in [WINDOW x budget_ms, top_ms], timing up to `tightenings` + 1
    batches of `count` more (appended to `measured`); once one is confirmed, only larger ones are timed, until none
    is left between it and the fastest measured over; None when none lands there."""
    ratio = statistics.median(m.measured_ms / m.predicted_ms for m in measured) if measured else 1.0
    best = _confirmed_best(measured, budget_ms, top_ms, time_member, confirmed)  # a second pass: kept timings
    for _ in range(tightenings + 1):
        floor = best.predicted_ms if best is not None else float("-inf")
        batch = _next_to_time(reachable, measured, ratio, budget_ms, top_ms, count, floor)
        if not batch:
            break
        for m in batch:
            m.measured_ms = time_member(m.member)
        measured += batch
        best = _confirmed_best(measured, budget_ms, top_ms, time_member, confirmed)
        ratio = statistics.median(m.measured_ms / m.predicted_ms for m in measured)
    return best


def _confirmed_best(measured: list[Priced], budget_ms: float, top_ms: float, time_member: Callable[[Member], float],
                    confirmed: set[str]) -> Priced | None:
    """The largest predicted member measured in [WINDOW x budget_ms, top_ms] that a second timing keeps there (the
    slower of its two timings becomes its measurement); None when none is left."""
    while True:
        inside = [m for m in measured if WINDOW * budget_ms <= m.measured_ms <= top_ms]
        if not inside:
            return None
        best = max(inside, key=lambda m: m.predicted_ms)
        if best.label in confirmed:
            return best
        best.measured_ms = max(best.measured_ms, time_member(best.member))
        confirmed.add(best.label)


def _next_to_time(members: list[Priced], measured: list[Priced], ratio: float, budget_ms: float, top_ms: float,
                  count: int, floor: float) -> list[Priced]:
    """Up to `count` untimed members worth timing next: only those predicted above `floor` (a member that fits)
    and between the slowest member measured under the window [WINDOW x budget_ms, top_ms] and the fastest
    measured over it; inside it by corrected prediction (largest first), then nearest its middle."""
    low = max([floor, *(m.predicted_ms for m in measured if m.measured_ms < WINDOW * budget_ms)])
    high = min((m.predicted_ms for m in measured if m.measured_ms > top_ms), default=float("inf"))
    left = [m for m in members if m.measured_ms is None and low < m.predicted_ms < high]
    middle = (WINDOW * budget_ms + top_ms) / 2

    def order(m: Priced) -> tuple[bool, float]:
        corrected = m.predicted_ms * ratio
        inside = WINDOW * budget_ms <= corrected <= top_ms
        return (not inside, -m.predicted_ms if inside else abs(corrected - middle))

    return sorted(left, key=order)[:count]
