"""`nasbert latency validate`: how well the table predicts whole students measured as users run them.

Random students of the table's space (seeded; never the ones calibration was fitted on) are built as
NasbertModel and timed end to end under the table's conditions. Reported for the raw sums and, when the
table is calibrated, for the calibrated prediction: MAPE, max |error| %, share within +-10 %, Kendall tau.
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
    measure_students,
    quietest_ms,
    relative_errors_percent,
    repeatability_percent,
    sample_archs,
)
from nasbert.latency.lut import LatencyTable
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
    measured_ms: list[float]
    raw_ms: list[float]
    calibrated_ms: list[float] | None
    seed: int
    repeatability_percent: float = 0.0  # median over students of slowest/quietest round - 1
    speed_change_percent: float | None = None  # the reference workload now vs when the table was profiled

    @property
    def raw(self) -> dict[str, float]:
        return accuracy(self.raw_ms, self.measured_ms)

    @property
    def calibrated(self) -> dict[str, float] | None:
        return None if self.calibrated_ms is None else accuracy(self.calibrated_ms, self.measured_ms)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"samples_count": len(self.archs), "seed": self.seed,
                                "repeatability_percent": round(self.repeatability_percent, 3),
                                **({} if self.speed_change_percent is None else
                                   {"speed_change_percent": round(self.speed_change_percent, 3)}),
                                "raw": _rounded(self.raw)}
        if self.calibrated is not None:
            data["calibrated"] = _rounded(self.calibrated)
        data["archs"] = [str(a) for a in self.archs]
        data["measured_ms"] = [round(x, 4) for x in self.measured_ms]
        data["predicted_raw_ms"] = [round(x, 4) for x in self.raw_ms]
        if self.calibrated_ms is not None:
            data["predicted_calibrated_ms"] = [round(x, 4) for x in self.calibrated_ms]
        return data


def _rounded(figures: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in figures.items()}


def validate(table: LatencyTable, samples: int = 30, seed: int = 0, min_run_time_s: float = 1.0, rounds: int = 3,
             progress: bool = True) -> Validation:
    """Measure `samples` random students, disjoint from the calibration samples, against the predictions."""
    exclude = table.calibration.archs if table.calibration is not None else ()
    archs = sample_archs(table.space, samples, seed, exclude)
    measurements = measure_students(table, archs, min_run_time_s, rounds, progress, desc="validating")
    measured = quietest_ms(measurements)
    raw = [table.predict_ms(a, STUDENT_HEADS, calibrated=False) for a in archs]
    calibrated = ([table.predict_ms(a, STUDENT_HEADS, calibrated=True) for a in archs]
                  if table.calibration is not None else None)
    return Validation(archs, measured, raw, calibrated, seed, repeatability_percent(measurements),
                      measurements.speed_change_percent)


def format_figures(figures: dict[str, float]) -> str:
    return (f"MAPE {figures['mape_percent']:.2f} %, max |error| {figures['max_abs_error_percent']:.2f} %, "
            f"within +-10 % {figures['within_10_percent_fraction'] * 100:.0f} %, "
            f"Kendall tau {figures['kendall_tau']:.3f}")


def machine_note(repeatability: float, speed_change: float | None) -> str:
    """One line on how steady the machine was, for the reports."""
    line = f"machine: the same student varied {repeatability:.1f} % between rounds (median)"
    if speed_change is not None:
        line += f"; the reference workload ran {speed_change:+.1f} % vs when the table was profiled"
        if abs(speed_change) > 5:
            line += " (the machine's speed drifted: re-profile when it is steady, or expect errors of that size)"
    return line


def plot_validation(result: Validation, path: str | Path, conditions: str = "") -> Path:
    """Predicted vs measured (PNG), raw and calibrated, with the diagonal and the +-10 % band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    measured = np.asarray(result.measured_ms)
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    top = max(measured.max(), max(result.raw_ms), max(result.calibrated_ms or [0])) * 1.08
    line = np.array([0.0, top])
    ax.plot(line, line, color="black", linewidth=1, label="predicted = measured")
    ax.fill_between(line, line * 0.9, line * 1.1, color="grey", alpha=0.2, label="+-10 %")
    ax.scatter(measured, result.raw_ms, s=18, marker="o", facecolors="none", edgecolors="tab:blue",
               label=f"raw sum (MAPE {result.raw['mape_percent']:.1f} %)")
    if result.calibrated_ms is not None:
        ax.scatter(measured, result.calibrated_ms, s=18, marker="x", color="tab:red",
                   label=f"calibrated (MAPE {result.calibrated['mape_percent']:.1f} %)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("measured end to end (ms)")
    ax.set_ylabel("predicted by the table (ms)")
    ax.set_title(f"{len(measured)} random students" + (f"\n{conditions}" if conditions else ""), fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
