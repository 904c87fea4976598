"""`nasbert latency calibrate`: correct the table's sums with whole students measured end to end.

Summing isolated per-module timings misses what only a whole forward pass has (weights falling out of
cache between modules, the encoder's own Python work) or counts what it does not (a module timed alone
keeps its weights hot). We measure M random students and fit, in relative error,

    measured - embeddings - heads  ~  constant_ms + sum over families f of factor_f * (table sum of f)
                                      + layer_ms * (real layers)

families: projection, M, F, S (every kernel); factors >= 0, the constant and the per-layer term of either sign
(the per-layer term held >= 0 where a negative one would price some layer below zero).
The factors are pulled lightly towards the one factor that best fits all families together, the constant and
the per-layer term towards 0, so a family the samples barely vary (or contain) takes the common correction
instead of a wild one. The per-layer term is what a small student needs: a factor scales a layer with its
size, but a whole forward adds a roughly fixed cost per layer (Python work, a layer's weights to fetch), so
with factors and a constant alone students under 6 ms were predicted 6-13 % fast and those over 35 ms 3-7 %
slow (the default space, two runs).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import lsq_linear

from nasbert.latency.lut import Calibration, Conditions, Entry, LatencyTable, layer_count
from nasbert.latency.machine import MachineCheck, refuse_or_warn
from nasbert.latency.measure import (
    SpeedGauge,
    UsualSpeed,
    at_usual_speed,
    gauge_reference_ms,
    model_inputs,
    resolve_device,
    resolve_dtype,
    time_call,
)
from nasbert.latency.runtimes import get_runtime
from nasbert.student import build_student
from search_space import Arch, BlockArch, SearchSpace

PLAUSIBLE_FACTORS = (0.5, 3.0)  # a family's factor outside this range is refused (see check_plausible)
PRIOR_WEIGHT = 0.1  # strength of the pull towards the common factor / constant 0, per unit of relative error
STUDENT_HEADS = ("pooler",)  # what NasbertModel runs after the encoder
STUDENT_ROUNDS = 5  # whole students vary more between rounds than modules: 5 rounds, one outlier each way


def sample_archs(space: SearchSpace, count: int, seed: int, exclude: Iterable[str] = ()) -> list[Arch]:
    """`count` distinct random archs of `space`, spread over its sizes, from a fixed seed, none in `exclude`.

    Sample i gets a size level q = (i + 0.5) / count, which sets its blocks' depths and widths (see
    `_sample_at_level`); ops are uniform. A draw uniform over block candidates (`space.sample`) is nearly
    always deep (a block of depth L is |ops|^L of them, 80 % of a 4-layer block of 5 ops): a calibration
    fitted on such students alone put a 3-layer 128-wide student at 9.1 ms where it measured 5.2-5.3, so
    `baselines` and `search` found nothing at 1/8 of a teacher's latency that they could have.
    """
    rng = np.random.default_rng(seed)
    seen, archs = set(exclude), []
    for i in range(count):
        level = (i + 0.5) / count
        for attempt in range(200):  # a small level has few archs: after 100 misses, the whole space
            arch = _sample_at_level(space, rng, level if attempt < 100 else 1.0)
            if str(arch) not in seen:
                seen.add(str(arch))
                archs.append(arch)
                break
    return archs


def _sample_at_level(space: SearchSpace, rng: np.random.Generator, level: float) -> Arch:
    """One arch whose blocks are ceil(level L) or one fewer layers deep, at one of the two widths up to the
    ceil(level W)-th narrowest: level 0+ is the smallest students, level 1 the deepest and widest."""
    top_depth = max(1, math.ceil(level * space.layers_per_block))
    top_width = max(1, math.ceil(level * len(space.widths)))
    widths = space.widths[max(0, top_width - 2): top_width]
    blocks = []
    for _ in range(space.num_blocks):
        depth = int(rng.integers(max(1, top_depth - 1), top_depth + 1))
        ops = tuple(space.ops[j] for j in rng.integers(len(space.ops), size=depth))
        width = int(widths[rng.integers(len(widths))])
        blocks.append(BlockArch(width, ops + ("I",) * (space.layers_per_block - depth)))
    return Arch(tuple(blocks))


def current_conditions(table: LatencyTable) -> Conditions:
    """This machine under the table's settings; refused if it is not the machine (or torch) the table is for."""
    cond = table.conditions
    here = Conditions.current(cond.device, cond.threads, cond.batch_size, cond.seq_len, cond.dtype, cond.runtime,
                              cond.precision)
    table.require(here)
    return here


def measure_students(table: LatencyTable, archs: Sequence[Arch], min_run_time_s: float = 1.0, rounds: int = 3,
                     progress: bool = True, desc: str = "measuring", what: str = "student latencies") -> UsualSpeed:
    """Per arch, the median of `rounds` end-to-end timings of a NasbertModel under the table's conditions (in
    its runtime and precision), taken at the speed the machine had when the table was profiled (its gauge
    reading, where it has one).

    The rounds are passes over all archs, so each student is timed at moments far apart; each timing builds
    the student afresh (seeded), so 30 default-space students never sit in memory together; a runtime that
    converts it (onnxruntime) does so once, in the first round, and keeps the graph on disk for the others. Timings of
    `what` ('a calibration') from a busy machine are refused (see `nasbert.latency.machine`).
    """
    cond = current_conditions(table)
    machine = MachineCheck.before(cond.threads, cond.device, what)
    device, dtype = resolve_device(cond.device), resolve_dtype(cond.dtype)
    gauge = SpeedGauge(device, dtype, cond.threads, min_run_time_s / rounds)
    reference = gauge_reference_ms(table)
    inputs = model_inputs(table.space.vocab_size, cond.batch_size, cond.seq_len, device)
    runtime = get_runtime(cond.runtime)
    converted = Path(tempfile.mkdtemp(prefix="nasbert-students-"))  # a runtime's graphs, one folder per student

    def time_student(n: int) -> Entry:
        torch.manual_seed(n)
        model = build_student(table.space, archs[n]).eval().to(device, dtype)
        call = runtime.prepare(model, inputs, cond.precision, cond.threads, keep_in=converted / str(n))
        return time_call(call, cond.threads, min_run_time_s / rounds)

    try:
        timed = at_usual_speed(range(len(archs)), time_student, rounds, gauge, reference, progress=progress,
                               desc=desc, unit="student", machine=machine)
    finally:
        shutil.rmtree(converted, ignore_errors=True)
    machine.require_steady(timed, what)
    return timed


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
    families = table.families
    layers = np.array([layer_count(arch) for arch in archs], dtype=float)  # (M,)
    features = np.array([[p[f] for f in families] for p in parts])  # (M, families)
    features = np.column_stack([features, layers, np.ones_like(y)])  # (M, families + 2): ..., layer_ms, constant
    a = features / y[:, None]  # rows divided by the measurement: residuals are relative errors
    b = (y - fixed) / y
    # One factor for everything first (closed form); the per-family factors are pulled towards it.
    variable = a[:, :-2].sum(axis=1)
    common = float(variable @ b / (variable @ variable))
    n_factors = len(families)
    # per-layer term and constant towards 0, in units of the median student (its layers / its time)
    prior_a = PRIOR_WEIGHT * np.eye(n_factors + 2)
    prior_a[-2, -2] = PRIOR_WEIGHT * float(np.median(layers)) / float(np.median(y))
    prior_a[-1, -1] = PRIOR_WEIGHT / float(np.median(y))
    prior_b = PRIOR_WEIGHT * np.r_[np.full(n_factors, common), 0.0, 0.0]
    lower = np.r_[np.zeros(n_factors), -np.inf, -np.inf]
    rows, targets, upper = np.vstack([a, prior_a]), np.r_[b, prior_b], np.full(n_factors + 2, np.inf)
    solution = lsq_linear(rows, targets, bounds=(lower, upper))
    calibration = _calibration(solution.x, families, archs, heads, seed)
    if calibration.negative_layers(table.layers):
        # A negative per-layer term larger than some family's scaled layer time (few or noisy samples) would price
        # those layers below zero, which no search can use: hold the term at >= 0 instead (every layer >= 0).
        lower[-2] = 0.0
        solution = lsq_linear(rows, targets, bounds=(lower, upper))
        calibration = _calibration(solution.x, families, archs, heads, seed)
    predicted = fixed + features @ solution.x
    errors = np.abs(relative_errors_percent(predicted, y))
    calibration.fit = {"fit_mape_percent": float(errors.mean()), "fit_max_abs_error_percent": float(errors.max())}
    return calibration


def _calibration(x: np.ndarray, families: Sequence[str], archs: Sequence[Arch], heads: Sequence[str],
                 seed: int) -> Calibration:
    """The fitted vector (factors..., layer_ms, constant) as a Calibration."""
    return Calibration(constant_ms=float(x[-1]), family_factor=dict(zip(families, map(float, x[:-2]))), seed=seed,
                       archs=[str(a) for a in archs], heads=tuple(heads), layer_ms=float(x[-2]))


def calibrate(table: LatencyTable, samples: int = 30, seed: int = 1, min_run_time_s: float = 1.0,
              rounds: int = STUDENT_ROUNDS, progress: bool = True, exclude: Iterable[str] = ()) -> Calibration:
    """Measure `samples` random students (seeded, none in `exclude`), fit, and store the fit in `table`.

    Refused, leaving `table` as it was, when the machine was busy or a factor is implausible."""
    archs = sample_archs(table.space, samples, seed, exclude)
    measured = measure_students(table, archs, min_run_time_s, rounds, progress, desc="calibrating",
                                what="a calibration")
    calibration = fit_calibration(table, archs, [e.median_ms for e in measured.entries], STUDENT_HEADS, seed)
    check_plausible(calibration)
    calibration.fit.update({k: v for k, v in measured.to_json().items() if k != "gauge_reference_ms"})
    table.calibration = calibration
    table.validation = None  # figures of the old correction no longer describe the table
    return calibration


def check_plausible(calibration: Calibration) -> None:
    """Refuse factors outside PLAUSIBLE_FACTORS: whole students and the sum of their modules cannot differ that
    much on one machine; such a fit comes from timings taken at another speed than the table's (a busy machine)."""
    low, high = PLAUSIBLE_FACTORS
    wild = {f: v for f, v in calibration.family_factor.items() if not low <= v <= high}
    if wild:
        factors = ", ".join(f"{f} x{v:.2f}" for f, v in wild.items())
        refuse_or_warn(f"the calibration fitted implausible factors ({factors}; whole students run within "
                       f"{low}-{high}x of their table sums): the students were timed on a busy machine or on "
                       "another machine than the table's")
