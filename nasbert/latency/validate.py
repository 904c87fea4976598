"""`nasbert latency validate`: how well the table predicts whole students measured as users run them.

Random students of the table's space (seeded; never the ones calibration was fitted on) are built as
NasbertModel and timed end to end under the table's conditions. Reported for the raw sums and, when the
table is calibrated, for the calibrated prediction: MAPE, max |error| %, share within +-10 %, Kendall tau.
Each student's time is the median of rounds taken at the speed the machine had when the table was profiled
(each timing scaled by the speed gauge read beside it; how far the gauge moved is reported). Figures from a
busy machine are refused, not stored (see `nasbert.latency.machine`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from nasbert.latency.calibrate import (
    STUDENT_HEADS,
    STUDENT_ROUNDS,
    measure_students,
    relative_errors_percent,
    sample_archs,
)
from nasbert.latency.lut import LatencyTable
from nasbert.latency.measure import UsualSpeed
from search_space import Arch


def accuracy(predicted_ms: list[float], measured_ms: list[float]) -> dict[str, float]:
    """MAPE, max |error| and share within +-10 % (relative to the measurement), and Kendall's tau."""
    errors = np.abs(relative_errors_percent(predicted_ms, measured_ms))
    tau = kendalltau(predicted_ms, measured_ms).statistic if len(measured_ms) > 1 else math.nan
    return {"mape_percent": float(errors.mean()), "max_abs_error_percent": float(errors.max()),
            "within_10_percent_fraction": float((errors <= 10).mean()), "kendall_tau": float(tau)}


@dataclass
class Validation:
    archs: list[Arch]
    measured_ms: list[float]  # per student, the median of its rounds scaled to the usual speed
    raw_ms: list[float]  # predicted: the table's sums
    calibrated_ms: list[float] | None  # predicted with the calibration (None: table not calibrated)
    seed: int
    machine: UsualSpeed | None = None  # how steady the machine was while measuring

    def figures(self) -> dict[str, dict[str, float]]:
        """{"raw": accuracy, "calibrated": accuracy (if calibrated)}."""
        result = {"raw": accuracy(self.raw_ms, self.measured_ms)}
        if self.calibrated_ms is not None:
            result["calibrated"] = accuracy(self.calibrated_ms, self.measured_ms)
        return result

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"samples_count": len(self.archs), "seed": self.seed}
        if self.machine is not None:
            data["machine"] = self.machine.to_json()
        data.update(_rounded(self.figures()))
        data["archs"] = [str(a) for a in self.archs]
        data["measured_ms"] = _rounded_list(self.measured_ms)
        data["predicted_raw_ms"] = _rounded_list(self.raw_ms)
        if self.calibrated_ms is not None:
            data["predicted_calibrated_ms"] = _rounded_list(self.calibrated_ms)
        return data


def _rounded(figures: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {kind: {k: round(v, 4) for k, v in values.items()} for kind, values in figures.items()}


def _rounded_list(values: list[float]) -> list[float]:
    return [round(x, 4) for x in values]


def validate(table: LatencyTable, samples: int = 30, seed: int = 0, min_run_time_s: float = 1.0,
             rounds: int = STUDENT_ROUNDS, progress: bool = True) -> Validation:
    """Measure `samples` random students, disjoint from the calibration samples, against the predictions."""
    exclude = table.calibration.archs if table.calibration is not None else ()
    archs = sample_archs(table.space, samples, seed, exclude)
    measured = measure_students(table, archs, min_run_time_s, rounds, progress, desc="validating",
                                what="validation figures")
    raw = [table.predict_ms(a, STUDENT_HEADS, calibrated=False) for a in archs]
    calibrated = ([table.predict_ms(a, STUDENT_HEADS, calibrated=True) for a in archs]
                  if table.calibration is not None else None)
    return Validation(archs, [e.median_ms for e in measured.entries], raw, calibrated, seed, measured)


def format_figures(figures: dict[str, float]) -> str:
    return (f"MAPE {figures['mape_percent']:.2f} %, max |error| {figures['max_abs_error_percent']:.2f} %, "
            f"within +-10 % {figures['within_10_percent_fraction'] * 100:.0f} %, "
            f"Kendall tau {figures['kendall_tau']:.3f}")


def report_lines(result: Validation) -> list[str]:
    """The figures as printed by `nasbert latency validate`."""
    return [f"{kind + ' sum' if kind == 'raw' else kind:<11} {format_figures(figures)}"
            for kind, figures in result.figures().items()]


def plot_validation(result: Validation, path: str | Path, conditions: str = "") -> Path:
    """Predicted vs measured (PNG), with the diagonal and the +-10 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    measured = np.asarray(result.measured_ms)
    best = result.calibrated_ms if result.calibrated_ms is not None else result.raw_ms
    label = "calibrated" if result.calibrated_ms is not None else "raw sum"
    figures = result.figures()
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    top = max([*measured, *result.raw_ms, *best]) * 1.08
    line = np.array([0.0, top])
    ax.plot(line, line, color="black", linewidth=1, label="predicted = measured")
    ax.fill_between(line, line * 0.9, line * 1.1, color="grey", alpha=0.2, label="+-10 %")
    if result.calibrated_ms is not None:
        ax.scatter(measured, result.raw_ms, s=18, marker="o", facecolors="none", edgecolors="tab:blue",
                   label=f"raw sum (MAPE {figures['raw']['mape_percent']:.1f} %)")
    ax.scatter(measured, best, s=18, marker="x", color="tab:red",
               label=f"{label} (MAPE {figures[label.split()[0]]['mape_percent']:.1f} %)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("measured end to end (ms)")
    ax.set_ylabel("predicted by the table (ms)")
    ax.set_title(f"{len(measured)} random students" + (f"\n{conditions}" if conditions else ""), fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
