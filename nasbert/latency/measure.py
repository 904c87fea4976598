"""Timing on the target device: one function times a call, one times a whole model as users run it.

Both fix the thread count (and restore it), warm up, then take torch.utils.benchmark's blocked_autorange:
repeated blocks of calls, the median per call and the interquartile range; on CUDA the timer synchronises
the device around every block, so asynchronous kernels are counted. Several rounds are taken and the
middle one kept, so a burst of other work (slower) or of idle neighbours (faster) does not land in the
table. Search and export reuse `measure_model_ms` to re-measure winners.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils import benchmark

from nasbert.errors import UserError
from nasbert.latency.lut import Entry

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
    """The round with the median median (the lower middle for an even count; runs counted over all rounds).

    A shared or virtual machine changes speed in bursts of seconds: other work slows it, idle neighbours on the
    host (a free sibling hyper-thread, more boost) speed it up by a quarter or more. Rounds far apart in time,
    each a median over many blocks, and the middle one of them, give its usual speed.
    """
    ordered = sorted(rounds, key=lambda e: e.median_ms)
    middle = ordered[(len(ordered) - 1) // 2]
    return Entry(middle.median_ms, middle.iqr_ms, sum(e.runs_count for e in rounds))


def reference_call(batch_size: int, seq_len: int, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> Callable[[], object]:
    """A fixed workload (an F layer of width 256) timed beside the table and the students, to see whether the
    machine itself ran at another speed when the table was profiled than when students were measured."""
    from nasbert.configuration_nasbert import NasbertConfig
    from nasbert.modeling_nasbert import NasbertLayer

    torch.manual_seed(0)
    layer = NasbertLayer(NasbertConfig(arch="256:F", head_dim=64, ffn_ratio=4), "F", 256).eval().to(device, dtype)
    x = torch.randn(batch_size, seq_len, 256, device=device, dtype=dtype)  # (B, T, 256)
    return lambda: layer(x, None, None)


class SpeedGauge:
    """Reads the machine's current speed as the time of the fixed reference workload (ms per call).

    A cloud or shared machine changes speed for minutes at a time (neighbours on the host, clock boost),
    by a quarter or more. Every timing of the profile and of the students is taken beside a gauge reading,
    and scaled to the profile's usual speed, so the table and the checks compare like with like.
    """

    def __init__(self, batch_size: int, seq_len: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, threads: int | None = None, min_run_time_s: float = 0.05):
        self.call = reference_call(batch_size, seq_len, device, dtype)
        self.threads, self.min_run_time_s = threads, min_run_time_s

    def read_ms(self) -> float:
        return time_call(self.call, self.threads, self.min_run_time_s, warmup=1).median_ms


def smoothed(readings: list[float], width: int = 5) -> list[float]:
    """Running median of gauge readings in time order: one reading is noisy (~2 %), speed phases last minutes."""
    half = width // 2
    return [float(np.median(readings[max(0, i - half): i + half + 1])) for i in range(len(readings))]


def model_inputs(vocab_size: int, batch_size: int, seq_len: int, device: torch.device | str = "cpu",
                 seed: int = 0) -> dict[str, torch.Tensor]:
    """What a tokenizer hands a model: input_ids (B, T) of real tokens (no padding) and an all-ones mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, max(vocab_size, 2), (batch_size, seq_len), generator=generator)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def measure_model(model: nn.Module, batch_size: int = 1, seq_len: int = 128, threads: int | None = None,
                  device: str = "cpu", dtype: str | None = None, min_run_time_s: float = 1.0, rounds: int = 3) -> Entry:
    """End-to-end latency of a model as users run it: eval, inference_mode, tokenizer-shaped inputs.

    The model is moved to `device` (and `dtype`, if given); its vocab size comes from `model.config`.
    `min_run_time_s` is split over `rounds` rounds, and the middle round's median is returned.
    """
    torch_device = resolve_device(device)
    model = model.eval().to(torch_device)
    if dtype is not None:
        model = model.to(resolve_dtype(dtype))
    max_len = getattr(model.config, "max_position_embeddings", seq_len)
    if seq_len > max_len:
        raise UserError(f"seq len {seq_len} is longer than the model's max_position_embeddings {max_len}")
    inputs = model_inputs(model.config.vocab_size, batch_size, seq_len, torch_device)

    def call() -> object:
        return model(**inputs)

    return typical([time_call(call, threads, min_run_time_s / rounds) for _ in range(rounds)])


def measure_model_ms(model: nn.Module, batch_size: int = 1, seq_len: int = 128, threads: int | None = None,
                     device: str = "cpu", dtype: str | None = None, min_run_time_s: float = 1.0,
                     rounds: int = 3) -> float:
    """Median end-to-end latency of `model` in ms (see `measure_model`)."""
    return measure_model(model, batch_size, seq_len, threads, device, dtype, min_run_time_s, rounds).median_ms


def load_student_folder(path: str | Path) -> nn.Module:
    """The model of an exported student folder (config.json + weights + code), as the class it was saved as."""
    import transformers

    import nasbert  # noqa: F401  (registers the student with the Auto classes)
    from nasbert.modeling_nasbert import AUTO_CLASSES

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a student folder (no config.json); give the folder `nasbert export` wrote")
    try:
        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
        ours = {cls.__name__: cls for cls in AUTO_CLASSES.values()}
        saved_as = (getattr(config, "architectures", None) or ["NasbertModel"])[0]
        if saved_as in ours:
            return ours[saved_as].from_pretrained(path, config=config, local_files_only=True)
        return transformers.AutoModel.from_pretrained(path, config=config, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"could not load the student in {path}: {str(error).splitlines()[0]}") from None
