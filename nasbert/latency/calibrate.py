"""`nasbert latency calibrate`: correct the table's sums with whole students measured end to end.

Summing isolated per-module timings misses what only a whole forward pass has (weights falling out of
cache between modules, the encoder's own Python work) or counts what it does not (a module timed alone
keeps its weights hot). We measure M random students and fit, in relative error,

    measured - embeddings - heads  ~  constant_ms + sum over families f of factor_f * (table sum of f)

families: projection, M, F, S (every kernel); factors >= 0, the constant of either sign, both pulled
lightly towards "no correction" (factor 1, constant 0) so a family few samples contain stays put.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import lsq_linear
from tqdm.auto import tqdm

from nasbert.latency.lut import FAMILIES, Calibration, Conditions, Entry, LatencyTable
from nasbert.latency.measure import measure_model, quietest, reference_call, resolve_device, resolve_dtype, time_call
from nasbert.student import build_student
from search_space import Arch, SearchSpace

PRIOR_WEIGHT = 0.02  # strength of the pull towards factor 1 / constant 0, per unit of relative error
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

    The rounds are passes over all archs, so each student is timed at moments far apart: a machine whose
    speed drifts (other tenants, clock boost) is then seen in its quietest state for every student alike.
    Every pass also times the table's reference workload, to compare the machine's speed with the profile's.
    """
    cond = current_conditions(table)
    device, dtype = resolve_device(cond.device), resolve_dtype(cond.dtype)
    timings: list[list[Entry]] = [[] for _ in archs]
    reference: list[Entry] = []
    with tqdm(total=rounds * len(archs), desc=desc, unit="student", disable=not progress) as bar:
        for _ in range(rounds):
            reference.append(time_call(reference_call(cond.batch_size, cond.seq_len, device, dtype), cond.threads,
                                       0.1))
            for n, arch in enumerate(archs):
                torch.manual_seed(n)
                model = build_student(table.space, arch)
                timings[n].append(measure_model(model, cond.batch_size, cond.seq_len, cond.threads, cond.device,
                                                cond.dtype, min_run_time_s / rounds, rounds=1))
                del model
                bar.update()
    profiled = table.profile.get("reference_ms")
    speed_change = (quietest(reference).median_ms / profiled - 1) * 100 if profiled else None
    return Measurements(timings, speed_change)


@dataclass
class Measurements:
    """End-to-end timings per arch and round, and how much slower (+) the machine ran than when profiled."""

    timings: list[list[Entry]]
    speed_change_percent: float | None


def quietest_ms(measurements: Measurements) -> list[float]:
    """Per arch, the median of its quietest round."""
    return [quietest(rounds).median_ms for rounds in measurements.timings]


def repeatability_percent(measurements: Measurements) -> float:
    """How much the machine disagreed with itself: median over archs of (slowest / quietest round - 1), in %."""
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
    scale = float(np.median(y))
    a = features / y[:, None]  # rows divided by the measurement: residuals are relative errors
    b = (y - fixed) / y
    n_factors = len(FAMILIES)
    prior_a = PRIOR_WEIGHT * np.eye(n_factors + 1)  # factors towards 1, constant (in units of the median) to 0
    prior_a[-1, -1] = PRIOR_WEIGHT / scale
    prior_b = PRIOR_WEIGHT * np.r_[np.ones(n_factors), 0.0]
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
    table.calibration = fit_calibration(table, archs, quietest_ms(measurements), STUDENT_HEADS, seed)
    table.calibration.fit["repeatability_percent"] = repeatability_percent(measurements)
    if measurements.speed_change_percent is not None:
        table.calibration.fit["speed_change_percent"] = measurements.speed_change_percent
    table.validation = None  # figures of the old correction no longer describe the table
    return table.calibration
