"""Side-by-side timing helpers for the benchmarks: interleaved repeats, medians, no timed tests."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 7, warmup: int = 2,
                        device: str = "cpu") -> dict[str, float]:
    """Median seconds of each function, run in turns (a, b, a, b, ...) so drift hits all of them alike.
    On CUDA every timing waits for the device before it starts and before it stops (kernels are asynchronous)."""
    sync = cuda_sync if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()
