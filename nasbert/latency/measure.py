"""Timing on the target device: one function times a call, one times a whole model as users run it.

Both fix the thread count (and restore it), warm up, then take torch.utils.benchmark's blocked_autorange:
repeated blocks of calls, the median per call and the interquartile range; on CUDA the timer synchronises
the device around every block, so asynchronous kernels are counted. Several rounds are taken, far apart
in time and each beside a speed gauge, and the median of those taken at the machine's usual speed kept, so
a burst of other work (slower) or of idle neighbours on the host (faster) lands neither in the table nor
in a check of it. Search and export reuse `measure_model_ms` to re-measure winners, in the table's runtime.

Timings from a busy machine are refused, not stored: see `nasbert.latency.machine` (NASBERT_ALLOW_BUSY=1
keeps them, with a warning, on a machine that is noisy by nature).
"""

from __future__ import annotations

import contextlib
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


GAUGE_SHAPE = (128, 256, 256)  # (rows, inner, cols) of the gauge's matmul: its 256 KiB stay in every L2


class SpeedGauge:
    """Reads which speed the machine runs at right now: the time of a small matmul that lives in cache.

    A cloud VM switches between speeds for seconds to minutes at a time (measured here: students ran 23 %
    faster for 8-24 s, about a fifth of the time, whenever the host's other threads went idle). A model's
    time cannot tell such a phase from its own cost, but a fixed, cache-resident workload can: its reading
    is steady within ~1 % in each phase and ~9 % apart between them, whatever ran before it. Timings taken
    while the gauge reads another speed than usual are retimed (see `at_usual_speed`).
    """

    name = "matmul {}x{}x{}".format(*GAUGE_SHAPE)

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 threads: int | None = None, min_run_time_s: float = 0.02):
        rows, inner, cols = GAUGE_SHAPE
        generator = torch.Generator().manual_seed(0)
        self.a = torch.randn(rows, inner, generator=generator).to(device, dtype)
        self.b = torch.randn(inner, cols, generator=generator).to(device, dtype)
        self.threads, self.min_run_time_s = threads, min_run_time_s

    def read_ms(self) -> float:
        return time_call(lambda: torch.mm(self.a, self.b), self.threads, self.min_run_time_s, warmup=5).median_ms


def gauge_reference_ms(table: Any) -> float | None:
    """The gauge's usual reading when `table` (a LatencyTable, or None) was profiled, if taken with this gauge."""
    profile = getattr(table, "profile", None) or {}
    return profile.get("gauge_reference_ms") if profile.get("gauge") == SpeedGauge.name else None


SPEED_TOLERANCE = 0.05  # a timing is at the usual speed when the gauge reads within +-5 % of its usual value


@dataclass
class UsualSpeed:
    """Per item, the median of its timings taken at the machine's usual speed, and how many were retimed."""

    entries: list[Entry]
    reference_ms: float  # the gauge's usual reading (the table's, or the median of this run's readings)
    timings_count: int  # timings taken, retimed ones included
    rejected_count: int  # timings taken while the gauge read another speed
    unsteady: list[int]  # items with no timing at the usual speed (their median over all timings is used)
    spreads: list[float]  # per item, slowest / fastest kept round - 1
    gauge_median_ms: float | None = None  # the median gauge reading of this run

    @property
    def repeatability_percent(self) -> float:
        """Median over items of how much their kept rounds disagreed, in %."""
        return float(np.median(self.spreads) * 100) if self.spreads else 0.0

    def note(self) -> str:
        """One line on how steady the machine was, for the reports."""
        return speed_note(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {"gauge_reference_ms": round(self.reference_ms, 6), "timings_count": self.timings_count,
                "rejected_count": self.rejected_count, "unsteady_count": len(self.unsteady),
                "repeatability_percent": round(self.repeatability_percent, 3)}


def speed_note(report: dict[str, Any]) -> str:
    """The machine line of a `UsualSpeed.to_json()` report (as stored in a table's profile or calibration)."""
    line = (f"machine: {report.get('rejected_count', 0)} of {report.get('timings_count', 0)} timings fell in another "
            f"speed phase and were retimed; kept rounds of one item agree within "
            f"{report.get('repeatability_percent', 0):.1f} % (median)")
    if report.get("unsteady_count"):
        line += f"; {report['unsteady_count']} item(s) never ran at the usual speed (median of all their timings used)"
    return line


def at_usual_speed(items: Sequence[T], time_item: Callable[[T], Entry], rounds: int, gauge: SpeedGauge,
                   reference_ms: float | None = None, max_passes: int | None = None, progress: bool = True,
                   desc: str = "measuring", unit: str = "item", machine: MachineCheck | None = None) -> UsualSpeed:
    """Time every item `rounds` times at the machine's usual speed, in passes over all items.

    The gauge is read before and after each timing; a timing counts when both readings are within
    SPEED_TOLERANCE of `reference_ms` (default: the median of this run's readings, i.e. the speed the
    machine runs at most of the time). Passes go on, retiming only what still lacks rounds, up to
    `max_passes` (default 3 x rounds); an item that never ran at the usual speed gets the median of all
    its timings and is listed in `unsteady`. Passes keep one item's rounds far apart in time. With `machine`,
    the other work on the machine is read before every timing (judged by `machine.require_steady`).
    """
    max_passes = max_passes or 3 * rounds
    taken: list[list[tuple[Entry, float, float]]] = [[] for _ in items]  # (timing, gauge before, gauge after)

    def usual(reference: float, before: float, after: float) -> bool:
        return max(abs(before / reference - 1), abs(after / reference - 1)) <= SPEED_TOLERANCE

    def reference() -> float:
        if reference_ms is not None:
            return reference_ms
        return float(np.median([g for timings in taken for _, *readings in timings for g in readings]))

    with tqdm(total=rounds * len(items), desc=desc, unit=unit, disable=not progress) as bar:
        for _ in range(max_passes):
            ref = reference() if any(taken) else reference_ms
            wanting = [n for n, timings in enumerate(taken)
                       if ref is None or sum(usual(ref, b, a) for _, b, a in timings) < rounds]
            if not wanting:
                break
            for n in wanting:
                if machine is not None:
                    machine.sample()
                before = gauge.read_ms()
                entry = time_item(items[n])
                taken[n].append((entry, before, gauge.read_ms()))
            ref = reference()
            bar.n = sum(min(rounds, sum(usual(ref, b, a) for _, b, a in t)) for t in taken)
            bar.refresh()
    ref = reference()
    entries, spreads, unsteady, rejected = [], [], [], 0
    for n, timings in enumerate(taken):
        kept = [e for e, b, a in timings if usual(ref, b, a)][:rounds]
        rejected += sum(not usual(ref, b, a) for _, b, a in timings)
        if not kept:
            unsteady.append(n)
            kept = [e for e, _, _ in timings]
        entries.append(typical(kept))
        spreads.append(max(e.median_ms for e in kept) / min(e.median_ms for e in kept) - 1)
    readings = [g for timings in taken for _, *pair in timings for g in pair]
    return UsualSpeed(entries, ref, sum(map(len, taken)), rejected, unsteady, spreads,
                      float(np.median(readings)) if readings else None)


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
    `min_run_time_s` is split over `rounds` rounds taken at the machine's usual speed (see `at_usual_speed`;
    `gauge_reference_ms` is a latency table's `profile.gauge_reference_ms`), and their median is returned.
    """
    return measure_model_at_usual_speed(model, batch_size, seq_len, threads, device, dtype, min_run_time_s, rounds,
                                        gauge_reference_ms, runtime, precision).entries[0]


def measure_model_at_usual_speed(model: nn.Module, batch_size: int = 1, seq_len: int = 128,
                                 threads: int | None = None, device: str = "cpu", dtype: str | None = None,
                                 min_run_time_s: float = 1.0, rounds: int = 3,
                                 gauge_reference_ms: float | None = None, runtime: str = "torch",
                                 precision: str | None = None) -> UsualSpeed:
    """`measure_model` with the machine's report (how many timings were retimed)."""
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
    gauge = SpeedGauge(torch_device, next(model.parameters()).dtype, threads)
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
