"""The searched student's margin over the best baseline family, with Welch's interval over seeds."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from nasbert.baselines.budgets import BudgetScale
from nasbert.baselines.margins import budget_margins, interval_text, margin_interval
from nasbert.baselines.report import markdown, share_text


def _welch_by_hand(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[float, float]:
    va, vb = stats.tvar(a) / len(a), stats.tvar(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    half = stats.t.ppf((1 + confidence) / 2, df) * math.sqrt(va + vb)
    difference = sum(a) / len(a) - sum(b) / len(b)
    return difference - half, difference + half


def test_the_interval_is_welchs_and_says_whether_seeds_separate_the_models() -> None:
    apart, close = ([0.80, 0.81, 0.82], [0.76, 0.77, 0.78]), ([0.781, 0.776, 0.788], [0.776, 0.764, 0.784])
    for searched, baseline in (apart, close):
        margin, low, high = margin_interval(searched, baseline)
        assert margin == pytest.approx(sum(searched) / 3 - sum(baseline) / 3)
        assert (low, high) == pytest.approx(_welch_by_hand(searched, baseline))
    assert margin_interval(*apart)[1] > 0  # every seed apart: the interval stays above zero
    assert margin_interval(*close)[1] < 0 < margin_interval(*close)[2]  # overlapping seeds: it spans zero


def test_one_seed_gives_no_interval_and_no_spread_gives_the_difference() -> None:
    assert margin_interval([0.8], [0.7, 0.75]) == (pytest.approx(0.075), None, None)
    assert margin_interval([0.8, 0.8], [0.7, 0.7]) == pytest.approx((0.1, 0.1, 0.1))
    assert interval_text({"margin": 0.011, "low": None, "high": None}) == "+0.0110"
    assert interval_text({"margin": 0.011, "low": -0.0046, "high": 0.0266}) == "+0.0110 [-0.0046, +0.0266]"


def _row(name: str, family: str, budget_ms: float | None, scores: list[float], picked: bool = False) -> dict:
    row = {"name": name, "family": family, "latency_budget_ms": budget_ms, "scores": scores,
           "mean": sum(scores) / len(scores), "min": min(scores), "max": max(scores), "measured_ms": 1.0,
           "budget": f"{budget_ms}ms" if budget_ms else None}
    return row | ({"picked": True} if picked else {})


def test_each_budget_judges_its_pick_against_its_best_family() -> None:
    rows = [_row("teacher", "teacher", None, [0.85]),
            _row("leader-1", "searched", 10.0, [0.78, 0.79, 0.80]),
            _row("leader-2", "searched", 10.0, [0.70, 0.71, 0.72], picked=True),
            _row("width-10", "width", 10.0, [0.74, 0.75, 0.76]),
            _row("uniform-10", "uniform", 10.0, [0.72, 0.73, 0.74]),
            _row("searched-5", "searched", 5.0, [0.70, 0.72, 0.71]),
            _row("depth-5", "depth", 5.0, [0.69, 0.70, 0.71]),
            _row("searched-2", "searched", 2.0, [0.6, 0.6, 0.6]),  # no family at 2 ms: nothing to judge
            _row("distilbert", "student", None, [0.79, 0.80, 0.81])]  # a reference at its own latency
    margins = budget_margins(rows)
    assert [(m["budget_ms"], m["searched"], m["baseline"]) for m in margins] == [
        (10.0, "leader-2", "width-10"), (5.0, "searched-5", "depth-5")]
    assert margins[0]["margin"] == pytest.approx(-0.04) and margins[0]["high"] < 0
    assert margins[1]["margin"] == pytest.approx(0.01) and margins[1]["low"] < 0 < margins[1]["high"]
    unpicked = [r | {"picked": False} for r in rows]  # without a pick every searched student is judged
    assert [m["searched"] for m in budget_margins(unpicked)] == ["leader-1", "leader-2", "searched-5"]

    payload = {"metric": "accuracy", "recipe": "finetune", "seeds": 3, "held_out": None, "models": rows,
               "margins": margins, "latency_note": "quiet",
               "latency_conditions": {"device": "cpu", "threads": 2, "batch_size": 1, "seq_len": 128}}
    table = markdown(payload)
    assert "| 5.000 ms | searched-5 | depth: depth-5 | " + interval_text(margins[1]) + " |" in table
    assert "95% interval over seeds, Welch" in table
    # each model of a budget shows its share of it, and one outside the 10 % window says which side
    assert "| searched-5 | searched | 5.000 ms | 1.000 (0.20 x, under) |" in table
    assert "| teacher | teacher | - | 1.000 | " in table
    assert share_text({"latency_budget_ms": 10.0, "measured_ms": 9.5}) == " (0.95 x)"
    assert share_text({"latency_budget_ms": 10.0, "measured_ms": 10.1}) == " (1.01 x, over)"


def test_a_scaled_budget_judges_each_models_share_against_the_teacher_timed_beside_it() -> None:
    """Budgets set when the teacher measured 15.3 ms, the teacher 16.0 ms here: a 3.6 ms student of the 3.825 ms
    budget is 0.94 x it as given but 0.90 x the 4.0 ms it scales to; one at 3.5 ms falls under the window."""
    scale = BudgetScale(teacher_ms=16.0, set_at_ms=15.3)
    assert scale.scaled(3.825) == pytest.approx(4.0)
    assert scale.text() == "budgets x 1.046: the teacher measures 16.000 ms here, 15.300 ms when they were set"
    row = {"latency_budget_ms": 3.825, "judged_budget_ms": scale.scaled(3.825), "measured_ms": 3.6}
    assert share_text(row) == " (0.90 x)" and share_text({**row, "judged_budget_ms": None}) == " (0.94 x)"
    assert share_text({**row, "measured_ms": 3.5}) == " (0.88 x, under)"

    rows = [_row("teacher", "teacher", None, [0.85]) | {"judged_budget_ms": None, "measured_ms": 16.0},
            _row("width-4", "width", 3.825, [0.7]) | {"judged_budget_ms": 4.0, "measured_ms": 3.6}]
    payload = {"metric": "accuracy", "recipe": "finetune", "seeds": 1, "held_out": None, "models": rows,
               "margins": [], "latency_note": "quiet", "budget_scale": {"text": scale.text()},
               "latency_conditions": {"device": "cpu", "threads": 2, "batch_size": 1, "seq_len": 128}}
    table = markdown(payload)
    assert "(quiet); budgets x 1.046: the teacher measures 16.000 ms here" in table
    assert "| width-4 | width | 3.825 ms (4.000 here) | 3.600 (0.90 x) |" in table


def test_stalled_fine_tunes_are_counted_and_marked(tmp_path) -> None:
    """A run that scored no better than a constant prediction of its training labels is stalled; one that
    predates those figures is unknown (None); the table marks a model with stalled seeds and says what it means."""
    import json

    from nasbert.baselines.report import stalled

    runs = {"learnt": {"eval_pearson": 0.8, "eval_mse": 0.7, "eval_constant_mse": 2.3},
            "flat": {"eval_pearson": 0.2, "eval_mse": 2.6, "eval_constant_mse": 2.3},
            "majority": {"eval_accuracy": 0.509, "eval_majority_accuracy": 0.509},
            "old": {"eval_accuracy": 0.8}}
    for name, results in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval_results.json").write_text(json.dumps(results))
    assert [stalled(json.loads((tmp_path / name / "eval_results.json").read_text())) for name in runs] == [
        False, True, True, None]

    rows = [_row("width-4", "width", 4.0, [0.2, 0.7, 0.1]) | {"stalled": 2},
            _row("searched-4", "searched", 4.0, [0.6, 0.7, 0.65]) | {"stalled": 0}]
    payload = {"metric": "pearson", "recipe": "finetune", "seeds": 3, "held_out": None, "models": rows,
               "margins": [], "latency_note": "quiet",
               "latency_conditions": {"device": "cpu", "threads": 2, "batch_size": 1, "seq_len": 128}}
    table = markdown(payload)
    assert "| 0.3333 [0.1000, 0.7000] (stalled: 2 of 3) |" in table
    assert "| 0.6500 [0.6000, 0.7000] |" in table and "(stalled: k of n)" in table
