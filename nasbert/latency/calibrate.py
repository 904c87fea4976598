"""`nasbert latency calibrate`: correct the table's sums with whole students measured end to end.

Summing isolated per-module timings misses what only a whole forward pass has (weights falling out of
cache between modules, the encoder's own Python work) or counts what it does not (a module timed alone
keeps its weights hot). We measure M random students and fit, in relative error,

    measured - embeddings - heads  ~  constant_ms + sum over families f of factor_f * (table sum of f)

families: projection, M, F, S (every kernel); factors >= 0, the constant of either sign. The factors are
pulled lightly towards the one factor that best fits all families together, and the constant towards 0,
so a family the samples barely vary (or contain) takes the common correction instead of a wild one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import lsq_linear
from tqdm.auto import tqdm

from nasbert.latency.lut import FAMILIES, Calibration, Conditions, Entry, LatencyTable
from nasbert.latency.measure import SpeedGauge, measure_model, resolve_device, resolve_dtype, smoothed, typical
from nasbert.student import build_student
from search_space import Arch, SearchSpace

PRIOR_WEIGHT = 0.1  # strength of the pull towards the common factor / constant 0, per unit of relative error
STUDENT_HEADS = ("pooler",)  # what NasbertModel runs after the encoder


def sample_archs(space: SearchSpace, count: int, seed: int, exclude: Iterable[str] = ()) -> list[Arch]:
    """`count` distinct random archs of `space` from a fixed seed, none of them in `exclude` (arch strings)."""
    rng = np.random.default_rng(seed)
    seen, archs = set(exclude), []
    for _ in range(100 * count + 100):
        if len(archs) == count:
            break
        arch = space.sample(rng)
        if str(arch) not in seen:
            seen.add(str(arch))
            archs.append(arch)
    return archs


def current_conditions(table: LatencyTable) -> Conditions:
    """This machine under the table's settings; refused if it is not the machine (or torch) the table is for."""
    cond = table.conditions
    here = Conditions.current(cond.device, cond.threads, cond.batch_size, cond.seq_len, cond.dtype)
    table.require(here)
    return here


def measure_students(table: LatencyTable, archs: Sequence[Arch], min_run_time_s: float = 1.0, rounds: int = 3,
                     progress: bool = True, desc: str = "measuring") -> Measurements:
    """Per arch, `rounds` end-to-end timings of a fresh NasbertModel under the table's conditions.

    The rounds are passes over all archs, so each student is timed at moments far apart. Beside every timing
    the speed gauge is read; with the table's gauge reading (`profile.reference_ms`) that gives each timing
    also scaled to the speed the machine had when the table was profiled.
    """
    cond = current_conditions(table)
    gauge = SpeedGauge(cond.batch_size, cond.seq_len, resolve_device(cond.device), resolve_dtype(cond.dtype),
                       cond.threads, min(0.05, min_run_time_s / rounds))
    timed: list[tuple[int, Entry]] = []  # (arch index, timing) in time order
    gauge_ms: list[float] = []
    with tqdm(total=rounds * len(archs), desc=desc, unit="student", disable=not progress) as bar:
        for _ in range(rounds):
            for n, arch in enumerate(archs):
                torch.manual_seed(n)
                model = build_student(table.space, arch)
                gauge_ms.append(gauge.read_ms())
                timed.append((n, measure_model(model, cond.batch_size, cond.seq_len, cond.threads, cond.device,
                                               cond.dtype, min_run_time_s / rounds, rounds=1)))
                del model
                bar.update()
    measurements = Measurements([[] for _ in archs], None, float(np.median(gauge_ms)))
    profiled = table.profile.get("reference_ms")
    if profiled:
        measurements.normalised = [[] for _ in archs]
    for (n, entry), speed_ms in zip(timed, smoothed(gauge_ms)):
        measurements.timings[n].append(entry)
        if profiled:
            measurements.normalised[n].append(entry.scaled(profiled / speed_ms))
    if profiled:
        measurements.speed_change_percent = (measurements.gauge_ms / profiled - 1) * 100
    return measurements


@dataclass
class Measurements:
    """End-to-end timings per arch and round: as measured, and scaled to the machine's speed at profile time."""

    timings: list[list[Entry]]
    normalised: list[list[Entry]] | None  # None where the table has no gauge reading
    gauge_ms: float  # the speed gauge's median reading during these measurements
    speed_change_percent: float | None = None  # + when the machine ran slower than when the table was profiled

    def typical_ms(self, normalised: bool = False) -> list[float]:
        """Per arch, the median of its middle round (scaled to the profile's speed if `normalised`)."""
        source = self.normalised if normalised and self.normalised is not None else self.timings
        return [typical(rounds).median_ms for rounds in source]


def repeatability_percent(measurements: Measurements) -> float:
    """How much the machine disagreed with itself: median over archs of (slowest / fastest round - 1), in %."""
    spreads = [max(e.median_ms for e in rounds) / min(e.median_ms for e in rounds) - 1
               for rounds in measurements.timings]
    return float(np.median(spreads) * 100)


def relative_errors_percent(predicted: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    predicted, measured = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return (predicted - measured) / measured * 100


def fit_calibration(table: LatencyTable, archs: Sequence[Arch], measured_ms: Sequence[float],
                    heads: tuple[str, ...] = STUDENT_HEADS, seed: int = 0) -> Calibration:
    """Least squares in relative error of the correction above (scipy's bounded lsq_linear)."""
    if len(archs) != len(measured_ms) or not archs:
        raise ValueError("calibration needs as many measurements as archs, and at least one")
    y = np.asarray(measured_ms, dtype=float)  # (M,)
    parts = [table.components_ms(arch, heads) for arch in archs]
    fixed = np.array([p["embeddings"] + p["heads"] for p in parts])  # (M,) kept at factor 1
    features = np.array([[p[f] for f in FAMILIES] + [1.0] for p in parts])  # (M, families + 1)
    a = features / y[:, None]  # rows divided by the measurement: residuals are relative errors
    b = (y - fixed) / y
    # One factor for everything first (closed form); the per-family factors are pulled towards it.
    variable = a[:, :-1].sum(axis=1)
    common = float(variable @ b / (variable @ variable))
    n_factors = len(FAMILIES)
    prior_a = PRIOR_WEIGHT * np.eye(n_factors + 1)  # constant (in units of the median) towards 0
    prior_a[-1, -1] = PRIOR_WEIGHT / float(np.median(y))
    prior_b = PRIOR_WEIGHT * np.r_[np.full(n_factors, common), 0.0]
    lower = np.r_[np.zeros(n_factors), -np.inf]
    solution = lsq_linear(np.vstack([a, prior_a]), np.r_[b, prior_b], bounds=(lower, np.full(n_factors + 1, np.inf)))
    factors, constant = solution.x[:n_factors], float(solution.x[-1])
    calibration = Calibration(constant_ms=constant, family_factor=dict(zip(FAMILIES, map(float, factors))),
                              seed=seed, archs=[str(a) for a in archs], heads=tuple(heads))
    predicted = fixed + features @ solution.x
    errors = np.abs(relative_errors_percent(predicted, y))
    calibration.fit = {"fit_mape_percent": float(errors.mean()), "fit_max_abs_error_percent": float(errors.max())}
    return calibration


def calibrate(table: LatencyTable, samples: int = 30, seed: int = 1, min_run_time_s: float = 1.0, rounds: int = 3,
              progress: bool = True, exclude: Iterable[str] = ()) -> Calibration:
    """Measure `samples` random students (seeded, none in `exclude`), fit, and store the fit in `table`."""
    archs = sample_archs(table.space, samples, seed, exclude)
    measurements = measure_students(table, archs, min_run_time_s, rounds, progress, desc="calibrating")
    # Fit on the timings scaled to the profile's speed: a drift of the machine must not become a "correction".
    table.calibration = fit_calibration(table, archs, measurements.typical_ms(normalised=True), STUDENT_HEADS, seed)
    table.calibration.fit["repeatability_percent"] = repeatability_percent(measurements)
    if measurements.speed_change_percent is not None:
        table.calibration.fit["speed_change_percent"] = measurements.speed_change_percent
    table.validation = None  # figures of the old correction no longer describe the table
    return table.calibration
