"""Per budget, the searched student's margin over the best baseline family, with a confidence interval.

A comparison's only repeated measurement is the seed: each fine-tune of a model is one draw of its task score.
So the interval is Welch's t-interval for the difference of two means over seeds (unequal variances;
scipy.stats.ttest_ind). With 3 seeds a side it is wide, which is the point: on the README's benchmark a margin
of +1.1 points of SST-2 came with an interval reaching below zero. The dev set itself is one fixed sample shared by
every model, so its own sampling error is left out: the interval answers "would other seeds keep the order?",
not "would another dev set?".
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from nasbert.baselines.families import FAMILIES  # the registered baseline families a searched student faces

CONFIDENCE = 0.95


def margin_interval(searched: list[float], baseline: list[float], confidence: float = CONFIDENCE
                    ) -> tuple[float, float | None, float | None]:
    """(mean(searched) - mean(baseline), low, high): Welch's interval at `confidence`; low and high are None
    with fewer than two scores a side (no spread to judge by)."""
    difference = float(np.mean(searched) - np.mean(baseline))
    if len(searched) < 2 or len(baseline) < 2:
        return difference, None, None
    if np.ptp(searched) == 0 and np.ptp(baseline) == 0:  # no spread at all: the difference is all there is
        return difference, difference, difference
    with warnings.catch_warnings():  # nearly equal scores: scipy warns of precision loss, the interval stands
        warnings.simplefilter("ignore", RuntimeWarning)
        interval = stats.ttest_ind(searched, baseline, equal_var=False).confidence_interval(confidence)
    return difference, float(interval.low), float(interval.high)


def budget_margins(rows: list[dict]) -> list[dict]:
    """One entry per judged searched student (a budget's held-out pick, else each of its searched students):
    {"budget_ms", "searched", "family", "baseline", "margin", "low", "high"} against the baseline family member
    with the best mean at its budget. `rows` are compare.json's models (name, family, latency_budget_ms, scores,
    mean, picked)."""
    margins = []
    for budget_ms in sorted({r["latency_budget_ms"] for r in rows if r["latency_budget_ms"]}, reverse=True):
        here = [r for r in rows if r["latency_budget_ms"] == budget_ms]
        families = [r for r in here if r["family"] in FAMILIES]
        searched = [r for r in here if r["family"] == "searched"]
        if not families or not searched:
            continue
        best = max(families, key=lambda r: r["mean"])
        for student in [r for r in searched if r.get("picked")] or searched:
            margin, low, high = margin_interval(student["scores"], best["scores"])
            margins.append({"budget_ms": budget_ms, "searched": student["name"], "family": best["family"],
                            "baseline": best["name"], "margin": margin, "low": low, "high": high})
    return margins


def interval_text(entry: dict) -> str:
    """'+0.0110 [-0.0046, +0.0266]' (the margin and its interval), or the margin alone without one."""
    text = f"{entry['margin']:+.4f}"
    return text if entry["low"] is None else text + f" [{entry['low']:+.4f}, {entry['high']:+.4f}]"
