"""Timing on the target device: one function times a call, one times a whole model as users run it.

Both fix the thread count (and restore it), warm up, then take torch.utils.benchmark's blocked_autorange:
repeated blocks of calls, the median per call and the interquartile range; on CUDA the timer synchronises
the device around every block, so asynchronous kernels are counted. Several rounds are taken, far apart
in time, each between two readings of a speed gauge (a fixed stack of student layers) and scaled by them to
the machine's usual speed, and their median kept, so a cloud VM's drift (slower or faster for seconds to
minutes) lands neither in the table nor in a check of it. Search and export reuse `measure_model_ms` to
re-measure winners, in the table's runtime.

Timings from a busy machine are refused, not stored: see `nasbert.latency.machine` (NASBERT_ALLOW_BUSY=1
keeps them, with a warning, on a machine that is noisy by nature).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils import benchmark
from tqdm.auto import tqdm

from nasbert.errors import UserError
from nasbert.latency.lut import Entry
from nasbert.latency.machine import MachineCheck
from nasbert.latency.runtimes import get_runtime, precision_for

T = TypeVar("T")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@contextlib.contextmanager
def fixed_threads(threads: int | None) -> Iterator[int]:
    """torch's intra-op thread count set to `threads` (None: leave it) for the block, then restored."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str) -> torch.device:
    """torch.device for 'cpu' / 'cuda' / 'cuda:N'; refuses CUDA where there is none."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} was asked for but torch sees no CUDA device here; use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise UserError(f"unknown device {device!r}; use cpu or cuda")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def time_call(fn: Callable[[], object], threads: int | None = None, min_run_time_s: float = 0.5,
              warmup: int = 3) -> Entry:
    """Median and IQR (ms) of one call of `fn`: `warmup` calls, then blocked_autorange for `min_run_time_s`."""
    with fixed_threads(threads) as n_threads, torch.inference_mode():
        for _ in range(warmup):
            fn()
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=n_threads)
        measurement = timer.blocked_autorange(min_run_time=min_run_time_s)
    # measurement.median / .iqr are seconds per call
    return Entry(median_ms=measurement.median * 1e3, iqr_ms=measurement.iqr * 1e3,
                 runs_count=len(measurement.times) * measurement.number_per_run)


def typical(rounds: list[Entry]) -> Entry:
    """The median of the rounds' medians (runs counted over all rounds); IQR of the round nearest to it."""
    medians = np.array([e.median_ms for e in rounds])
    middle = float(np.median(medians))
    nearest = rounds[int(np.argmin(np.abs(medians - middle)))]
    return Entry(middle, nearest.iqr_ms, sum(e.runs_count for e in rounds))


# A fixed student of the default space: every op and width, ~10 ms a call at 1 x 128 and 2 threads here.
GAUGE_ARCH = "384:M,F,S5,I,I,I/256:M,F,S3,I,I,I/512:M,F,S7,I,I,I/192:M,F,I,I,I,I"
GAUGE_RUN_TIME_S = 0.1  # one reading


class SpeedGauge:
    """Reads how fast the machine runs right now: the time of a fixed student, timed like the students.

    A cloud VM's speed drifts: on this project's 2-core machine one student timed 29-38 ms within a minute and
    the same 30 students 15 % apart on average from one run to the next, while nothing else ran. A model's time
    cannot tell such drift from its own cost, but a fixed workload timed next to it can. The workload is one
    student (GAUGE_ARCH, seeded weights, batch 1 x 128 tokens), the same in every process, so it slows down and
    speeds up with the students: 12 students timed 6 times each varied by 4.2 % (median coefficient of
    variation) scaled by it, 9.4 % unscaled, 7.1 % scaled by a 3-layer stack and more by a cache-resident
    matmul (the gauge before, which correlated 0.3-0.5 with student times).
    """

    name = f"student {GAUGE_ARCH} at 1 x {128} tokens"

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 threads: int | None = None, timing_s: float = GAUGE_RUN_TIME_S):
        self.model = gauge_model(torch.device(device), dtype)
        self.inputs = model_inputs(self.model.config.vocab_size, 1, 128, device)
        # a reading lasts no longer than the timings it sits between
        self.threads, self.min_run_time_s = threads, min(GAUGE_RUN_TIME_S, timing_s)

    def _run(self) -> torch.Tensor:
        return self.model(**self.inputs).last_hidden_state

    def read_ms(self) -> float:
        return time_call(self._run, self.threads, self.min_run_time_s, warmup=2).median_ms


@functools.lru_cache(maxsize=4)
def gauge_model(device: torch.device, dtype: torch.dtype) -> nn.Module:
    """The gauge's student, built once per process and device: every timing reads the gauge, and building a
    default-space student took about half a second, as long as the toy students' whole timing."""
    from nasbert.student import build_student
    from search_space import SearchSpace

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_student(SearchSpace(), GAUGE_ARCH).eval().to(device, dtype)


def gauge_reference_ms(table: Any) -> float | None:
    """The gauge's usual reading when `table` (a LatencyTable, or None) was profiled, if taken with this gauge."""
    profile = getattr(table, "profile", None) or {}
    return profile.get("gauge_reference_ms") if profile.get("gauge") == SpeedGauge.name else None


@dataclass
class UsualSpeed:
    """Per item, the median of its timings scaled to the machine's usual speed, and how the machine ran."""

    entries: list[Entry]
    reference_ms: float  # the gauge's usual reading (the table's, or the median of this run's readings)
    timings_count: int
    spreads: list[float]  # per item, slowest / fastest scaled round - 1
    gauge_median_ms: float | None = None  # the median gauge reading of this run
    speed_range: tuple[float, float] = (1.0, 1.0)  # lowest and highest gauge reading / reference_ms

    @property
    def repeatability_percent(self) -> float:
        """Median over items of how much their scaled rounds disagreed, in %."""
        return float(np.median(self.spreads) * 100) if self.spreads else 0.0

    def note(self) -> str:
        """One line on how steady the machine was, for the reports."""
        return speed_note(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {"gauge_reference_ms": round(self.reference_ms, 6), "timings_count": self.timings_count,
                "gauge_range_factor": [round(x, 4) for x in self.speed_range],
                "repeatability_percent": round(self.repeatability_percent, 3)}


def speed_note(report: dict[str, Any]) -> str:
    """The machine line of a `UsualSpeed.to_json()` report (as stored in a table's profile or calibration)."""
    low, high = report.get("gauge_range_factor") or (1.0, 1.0)
    return (f"machine: the speed gauge read {low:.0%}-{high:.0%} of its usual time over "
            f"{report.get('timings_count', 0)} timings, each scaled to the usual speed; scaled rounds of one item "
            f"agree within "
            f"{report.get('repeatability_percent', 0):.1f} % (median)")


def at_usual_speed(items: Sequence[T], time_item: Callable[[T], Entry], rounds: int, gauge: SpeedGauge,
                   reference_ms: float | None = None, progress: bool = True, desc: str = "measuring",
                   unit: str = "item", machine: MachineCheck | None = None) -> UsualSpeed:
    """Time every item `rounds` times, in passes over all items, each timing scaled to the machine's usual speed.

    The gauge is read between timings, so each timing sits between two readings; it is scaled by
    `reference_ms` / (the mean of those two readings), `reference_ms` being the table's usual reading (default:
    the median of this run's readings). Passes keep one item's rounds far apart in time; the median of its
    scaled rounds is kept. With `machine`, the other work on the machine is read before every timing (judged by
    `machine.require_steady`).
    """
    raw: list[list[tuple[Entry, int]]] = [[] for _ in items]  # (timing, index of the reading before it)
    readings = [gauge.read_ms()]
    with tqdm(total=rounds * len(items), desc=desc, unit=unit, disable=not progress) as bar:
        for _ in range(rounds):
            for n, item in enumerate(items):
                if machine is not None:
                    machine.sample()
                raw[n].append((time_item(item), len(readings) - 1))
                readings.append(gauge.read_ms())
                bar.update()
    reference = reference_ms if reference_ms is not None else float(np.median(readings))
    entries, spreads = [], []
    for timings in raw:
        scaled = [Entry(e.median_ms * reference / ((readings[k] + readings[k + 1]) / 2), e.iqr_ms, e.runs_count)
                  for e, k in timings]
        entries.append(typical(scaled))
        spreads.append(max(e.median_ms for e in scaled) / min(e.median_ms for e in scaled) - 1)
    ratios = np.array(readings) / reference
    return UsualSpeed(entries, reference, sum(map(len, raw)), spreads, float(np.median(readings)),
                      (float(ratios.min()), float(ratios.max())))


def model_inputs(vocab_size: int, batch_size: int, seq_len: int, device: torch.device | str = "cpu",
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """What a tokenizer hands a model: input_ids (B, T) of real tokens (no padding) and an all-ones mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, max(vocab_size, 2), (batch_size, seq_len), generator=generator)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def measure_model(model: nn.Module, batch_size: int = 1, seq_len: int = 128, threads: int | None = None,
                  device: str = "cpu", dtype: str | None = None, min_run_time_s: float = 1.0, rounds: int = 3,
                  gauge_reference_ms: float | None = None, runtime: str = "torch",
                  precision: str | None = None) -> Entry:
    """End-to-end latency of a model as users run it: eval, inference_mode, tokenizer-shaped inputs.

    The model is moved to `device` (and `dtype`, if given); its vocab size comes from `model.config`. In another
    `runtime` than torch it is exported (at `precision`: fp32 or int8) and timed there (see `runtimes`).
    `min_run_time_s` is split over `rounds` rounds scaled to the machine's usual speed (see `at_usual_speed`;
    `gauge_reference_ms` is a latency table's `profile.gauge_reference_ms`), and their median is returned.
    """
    return measure_model_at_usual_speed(model, batch_size, seq_len, threads, device, dtype, min_run_time_s, rounds,
                                        gauge_reference_ms, runtime, precision).entries[0]


def measure_model_at_usual_speed(model: nn.Module, batch_size: int = 1, seq_len: int = 128,
                                 threads: int | None = None, device: str = "cpu", dtype: str | None = None,
                                 min_run_time_s: float = 1.0, rounds: int = 3,
                                 gauge_reference_ms: float | None = None, runtime: str = "torch",
                                 precision: str | None = None) -> UsualSpeed:
    """`measure_model` with the machine's report (how far the gauge moved, how well rounds agree)."""
    torch_device = resolve_device(device)
    timer = get_runtime(runtime)
    if precision is not None or runtime != "torch":
        precision, dtype = precision_for(precision, dtype)
        timer.check(precision, device)
    model = model.eval().to(torch_device)
    if dtype is not None:
        model = model.to(resolve_dtype(dtype))
    max_len = getattr(model.config, "max_position_embeddings", seq_len)
    if seq_len > max_len:
        raise UserError(f"seq len {seq_len} is longer than the model's max_position_embeddings {max_len}")
    machine = MachineCheck.before(threads, device, "a measured latency")
    inputs = model_inputs(model.config.vocab_size, batch_size, seq_len, torch_device)
    gauge = SpeedGauge(torch_device, next(model.parameters()).dtype, threads, min_run_time_s / rounds)
    call = timer.prepare(model, inputs, precision or "fp32", int(threads or torch.get_num_threads()))
    timed = at_usual_speed([call], lambda c: time_call(c, threads, min_run_time_s / rounds), rounds, gauge,
                           gauge_reference_ms, progress=False, machine=machine)
    machine.require_steady(timed, "a measured latency")
    return timed


def measure_model_ms(model: nn.Module, batch_size: int = 1, seq_len: int = 128, threads: int | None = None,
                     device: str = "cpu", dtype: str | None = None, min_run_time_s: float = 1.0,
                     rounds: int = 3, gauge_reference_ms: float | None = None, runtime: str = "torch",
                     precision: str | None = None) -> float:
    """Median end-to-end latency of `model` in ms (see `measure_model`)."""
    return measure_model(model, batch_size, seq_len, threads, device, dtype, min_run_time_s, rounds,
                         gauge_reference_ms, runtime, precision).median_ms


def load_student_folder(path: str | Path) -> nn.Module:
    """The model of an exported student folder (config.json + weights + code), as the class it was saved as."""
    import transformers

    from nasbert.common.remote_code import trust_remote_code
    from nasbert.modeling_nasbert import AUTO_CLASSES
    from nasbert.registration import register_auto_classes

    register_auto_classes()  # `import nasbert` alone no longer does

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a student folder (no config.json); give the folder `nasbert export` wrote")
    try:
        trust = trust_remote_code(path, False, "the folder")  # a folder's own code never runs here
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=trust)
        ours = {cls.__name__: cls for cls in AUTO_CLASSES.values()}
        saved_as = (getattr(config, "architectures", None) or ["NasbertModel"])[0]
        if saved_as in ours:
            return ours[saved_as].from_pretrained(path, config=config, local_files_only=True)
        return transformers.AutoModel.from_pretrained(path, config=config, local_files_only=True,
                                                      trust_remote_code=trust)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"could not load the student in {path}: {str(error).splitlines()[0]}") from None
