"""How well the latency table predicts whole students: raw sums and calibrated, side by side.

    python bench/latency_accuracy.py [--threads 2] [--samples 30] [--calibration-samples 30] [--output DIR]
                                     [--runtime torch|onnxruntime] [--precision fp32|int8]

Profiles the default NAS-BERT space on this machine (batch 1 x seq 128 unless told otherwise), calibrates
on random students of seed 1, validates on other random students of seed 0 (disjoint from the calibration
set) measured end to end as NasbertModel, and prints MAPE, max |error|, share within +-10 % and Kendall tau
for the raw table sums and the calibrated prediction. Every timing (profile, calibration, validation) is the
median of rounds scaled to the machine's usual speed by a speed gauge read beside each timing (a fixed stack
of student layers, which drifts with the students when a cloud VM runs faster or slower).
Targets: MAPE <= 5 %, all within +-10 %, tau >= 0.9.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from nasbert.latency import calibrate, plot_validation, profile_space, validate
from nasbert.latency.measure import speed_note
from search_space import SearchSpace

TARGETS = {"mape_percent": "<= 5", "max_abs_error_percent": "<= 10", "within_10_percent_fraction": "= 1",
           "kendall_tau": ">= 0.9"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--samples", type=int, default=30, help="validation students")
    parser.add_argument("--calibration-samples", type=int, default=30)
    parser.add_argument("--runtime", default="torch", help="the runtime the table is timed in (torch, onnxruntime)")
    parser.add_argument("--precision", help="fp32 (default) or int8 (onnxruntime: dynamic INT8 quantization)")
    parser.add_argument("--output", help="folder for lut.json and the plot (default: a temporary folder)")
    args = parser.parse_args()
    output = Path(args.output or tempfile.mkdtemp(prefix="latency_accuracy_"))

    start = time.perf_counter()
    table = profile_space(SearchSpace(), threads=args.threads, batch_size=args.batch_size, seq_len=args.seq_len,
                          runtime=args.runtime, precision=args.precision)
    profile_s = time.perf_counter() - start
    print(f"profiled {len(table.entries())} entries of the default space in {profile_s:.1f} s "
          f"under {table.conditions.describe()}")
    print("  " + speed_note(table.profile))

    start = time.perf_counter()
    cal = calibrate(table, args.calibration_samples, seed=1)
    factors = ", ".join(f"{k} x{v:.3f}" for k, v in cal.family_factor.items())
    print(f"calibrated on {len(cal.archs)} students (seed 1) in {time.perf_counter() - start:.1f} s: "
          f"constant {cal.constant_ms:+.3f} ms, {cal.layer_ms:+.3f} ms per layer, {factors}; "
          f"fit MAPE {cal.fit['fit_mape_percent']:.2f} %")
    print("  " + speed_note(cal.fit))

    result = validate(table, args.samples, seed=0)
    table.validation = result.to_json()
    table.save(output / "lut.json")
    plot = plot_validation(result, output / "validation.png", table.conditions.describe())
    measured = result.measured_ms
    print(f"validated on {len(measured)} other students (seed 0), measured {min(measured):.1f}-{max(measured):.1f} ms")
    print("  " + result.machine.note())
    figures = result.figures()
    print(f"{'figure':<28}{'raw sum':>12}{'calibrated':>12}   target")
    for key, target in TARGETS.items():
        scale = 100 if key.endswith("_fraction") else 1
        values = [figures[kind][key] * scale for kind in ("raw", "calibrated")]
        print(f"{key:<28}" + "".join(f"{v:>12.3f}" for v in values) + f"   {target}{' (%)' if scale == 100 else ''}")
    print(f"table and plot: {output / 'lut.json'}, {plot}")


if __name__ == "__main__":
    main()
