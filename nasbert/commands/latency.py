"""`nasbert latency profile|calibrate|validate|measure|predict`: the latency lookup table and its checks.

    nasbert latency profile   --output lut.json [--overwrite] [--device cpu|cuda] [--threads N] [--batch-size 1]
                              [--seq-len 128] [--runtime torch|onnxruntime] [--precision fp32|bf16|fp16|int8]
    nasbert latency calibrate --lut lut.json [--samples 30] [--seed 1]
    nasbert latency validate  --lut lut.json [--samples 30] [--seed 0] [--plot lut.validation.png]
    nasbert latency measure   students/NAME [--lut lut.json] [--threads N] [--batch-size B] [--seq-len T] [--runtime R]
    nasbert latency predict   ARCH --lut lut.json [--runtime R] [--precision P]

Calibrate and validate time whole students in the table's runtime and precision.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nasbert.commands.base import SPACE_HELP, command, load_space
from nasbert.errors import UserError, require_positive


def _check_positive(args: argparse.Namespace) -> None:
    """Counts and times must be positive (checked here, so the error is one sentence, exit 2)."""
    require_positive(args, "threads", "batch_size", "seq_len", "samples", "min_run_time", "rounds")


RUNTIME_NAMES = ("torch", "onnxruntime")  # nasbert.latency.runtimes.RUNTIMES (not imported: --help stays light)
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
STUDENT_ROUNDS = 5  # nasbert.latency.calibrate.STUDENT_ROUNDS (not imported, as above)


def _runtime_arguments(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Runtime and precision; without defaults they mean 'the table's'."""
    table = "" if defaults else "the table's, or "
    parser.add_argument("--runtime", choices=RUNTIME_NAMES, default="torch" if defaults else None,
                        help=f"time in PyTorch eager or in ONNX Runtime on the CPU (default: {table}torch; "
                             "onnxruntime needs pip install nasbert[onnx])")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help=f"fp32; bf16 or fp16 (torch, where the device has them); int8 (onnxruntime, dynamic "
                             f"quantization) (default: {table}that of --dtype, fp32)")


def _condition_arguments(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Device, threads, batch, seq len, dtype; without defaults they mean 'the table's'."""
    table = "" if defaults else "the table's, or "
    parser.add_argument("--device", default="cpu" if defaults else None, help=f"cpu or cuda (default: {table}cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch intra-op threads (default: {table}torch's own, usually the physical cores)")
    parser.add_argument("--batch-size", type=int, default=1 if defaults else None,
                        help=f"sequences per forward (default: {table}1)")
    parser.add_argument("--seq-len", type=int, default=128 if defaults else None,
                        help=f"tokens per sequence (default: {table}128)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"],
                        help=f"weights and activations in torch, as --precision fp32, fp16, bf16 (default: {table}"
                             "float32)")


def _timing_arguments(parser: argparse.ArgumentParser, default_s: float, default_rounds: int = 3) -> None:
    parser.add_argument("--min-run-time", type=float, default=default_s,
                        help=f"seconds of timed runs per measurement (default {default_s})")
    parser.add_argument("--rounds", type=int, default=default_rounds,
                        help="split the timed runs into this many rounds, far apart in time and each scaled to "
                             f"the machine's usual speed by a speed gauge, and keep their median (default "
                             f"{default_rounds})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _step(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="latency_command", required=True, metavar="STEP")

    p = _step(sub, "profile", "time every module of the space on this device into a lookup table")
    p.add_argument("--output", required=True, help="where to write the table (JSON), e.g. lut.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing table at --output")
    p.add_argument("--space", help=SPACE_HELP)
    _condition_arguments(p, defaults=True)
    _runtime_arguments(p, defaults=True)
    _timing_arguments(p, 0.9)
    p.set_defaults(latency_run=run_profile)

    p = _step(sub, "calibrate", "fit a correction of the table on random students measured end to end")
    p.add_argument("--lut", required=True, help="the table to calibrate (updated in place)")
    p.add_argument("--samples", type=int, default=30, help="random students to measure (default 30)")
    p.add_argument("--seed", type=int, default=1, help="seed of the students (default 1; validate uses 0)")
    _timing_arguments(p, 1.0, STUDENT_ROUNDS)
    p.set_defaults(latency_run=run_calibrate)

    p = _step(sub, "validate", "measure random students end to end and report the table's accuracy")
    p.add_argument("--lut", required=True, help="the table to check (its figures are stored in it)")
    p.add_argument("--samples", type=int, default=30, help="random students to measure (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the students (default 0)")
    p.add_argument("--plot", help="predicted-vs-measured PNG (default: beside the table, <lut>.validation.png)")
    _timing_arguments(p, 1.0, STUDENT_ROUNDS)
    p.set_defaults(latency_run=run_validate)

    p = _step(sub, "measure", "measure an exported student folder end to end")
    p.add_argument("student", help="a student folder (config.json, model.safetensors, code)")
    p.add_argument("--lut", help="also print the table's prediction for it (and use the table's conditions)")
    _condition_arguments(p, defaults=False)
    _runtime_arguments(p, defaults=False)
    _timing_arguments(p, 1.0)
    p.set_defaults(latency_run=run_measure)

    p = _step(sub, "predict", "print the table's prediction for an arch")
    p.add_argument("arch", help="arch string, e.g. 256:M,F,S5,F,I,I/512:M,F,M,F,M,F/...")
    p.add_argument("--lut", required=True, help="the table")
    p.add_argument("--heads", nargs="*", default=["pooler"], help="heads to add (default: pooler, as NasbertModel)")
    _runtime_arguments(p, defaults=False)
    p.set_defaults(latency_run=run_predict)


@command("latency", "per-op latency lookup table: profile, calibrate, validate, measure, predict", _add_arguments)
def run_latency(args: argparse.Namespace) -> int:
    _check_positive(args)
    return args.latency_run(args)


def run_profile(args: argparse.Namespace) -> int:
    from nasbert.latency.measure import speed_note
    from nasbert.latency.profile import profile_space

    output = Path(args.output)
    if output.is_dir():
        raise UserError(f"--output {output} is a folder; give a file name such as {output / 'lut.json'}")
    if args.space and output.resolve() in (Path(args.space).resolve(), (Path(args.space) / "config.json").resolve()):
        raise UserError(f"--output {output} is the --space file; choose another file for the table")
    if output.exists() and not args.overwrite:
        raise UserError(f"--output {output} already exists; pass --overwrite to replace it or choose another file")
    space = load_space(args.space)
    table = profile_space(space, args.device, args.threads, args.batch_size, args.seq_len, args.dtype,
                          args.min_run_time, args.rounds, progress=not args.no_progress, runtime=args.runtime,
                          precision=args.precision)
    table.save(output)
    print(f"profiled {len(table.entries())} entries in {table.profile['wall_ms'] / 1e3:.1f} s under "
          f"{table.conditions.describe()}; wrote {output}")
    print(speed_note(table.profile))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from nasbert.latency.calibrate import calibrate
    from nasbert.latency.lut import LatencyTable
    from nasbert.latency.measure import speed_note

    table = LatencyTable.load(args.lut)
    cal = calibrate(table, args.samples, args.seed, args.min_run_time, args.rounds,
                    progress=not args.no_progress)
    table.save(args.lut)
    factors = ", ".join(f"{k} x{v:.3f}" for k, v in cal.family_factor.items())
    print(f"calibrated on {len(cal.archs)} students (seed {cal.seed}): constant {cal.constant_ms:+.3f} ms, "
          f"{cal.layer_ms:+.3f} ms per layer, {factors}; "
          f"fit MAPE {cal.fit['fit_mape_percent']:.2f} %, max {cal.fit['fit_max_abs_error_percent']:.2f} %; "
          f"wrote {args.lut}")
    print(speed_note(cal.fit))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from nasbert.latency.lut import LatencyTable
    from nasbert.latency.validate import plot_validation, report_lines, validate

    table = LatencyTable.load(args.lut)
    if table.calibration is not None and args.seed == table.calibration.seed:
        print(f"note: seed {args.seed} is the calibration's; its students are skipped, so the samples stay disjoint")
    result = validate(table, args.samples, args.seed, args.min_run_time, args.rounds,
                      progress=not args.no_progress)
    plot = Path(args.plot) if args.plot else Path(args.lut).with_suffix(".validation.png")
    plot_validation(result, plot, table.conditions.describe())
    table.validation = {**result.to_json(), "plot": str(plot)}
    table.save(args.lut)
    print(f"{len(result.archs)} random students (seed {args.seed}), {table.conditions.describe()}")
    for line in report_lines(result):
        print(line)
    print(result.machine.note())
    print(f"plot: {plot}; figures stored in {args.lut}")
    return 0


def run_measure(args: argparse.Namespace) -> int:
    from nasbert.latency.students import measure_student

    timing = measure_student(args.student, args.lut, args.device, args.threads, args.batch_size, args.seq_len,
                             args.dtype, args.min_run_time, args.rounds, args.runtime, args.precision)
    for line in timing.report_lines():
        print(line)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from nasbert.latency.lut import LatencyTable

    table = LatencyTable.load(args.lut)
    table.require_runtime(args.runtime, args.precision)
    arch = table.space.validate(args.arch)
    raw = table.predict_ms(arch, args.heads, calibrated=False)
    line = f"{arch}: {raw:.3f} ms raw sum"
    if table.calibration is not None:
        line += f", {table.predict_ms(arch, args.heads, calibrated=True):.3f} ms calibrated"
    print(f"{line} ({table.conditions.describe()})")
    return 0

