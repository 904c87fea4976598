"""`nasbert latency profile|calibrate|validate|measure|predict`: the latency lookup table and its checks.

    nasbert latency profile   --output lut.json [--device cpu|cuda] [--threads N] [--batch-size 1] [--seq-len 128]
    nasbert latency calibrate --lut lut.json [--samples 30] [--seed 1]
    nasbert latency validate  --lut lut.json [--samples 30] [--seed 0] [--plot lut.validation.png]
    nasbert latency measure   students/NAME [--lut lut.json] [--threads N] [--batch-size B] [--seq-len T]
    nasbert latency predict   ARCH --lut lut.json
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from nasbert.commands.base import command, load_space
from nasbert.errors import UserError
from nasbert.latency.calibrate import calibrate
from nasbert.latency.lut import MODEL_HEADS, Conditions, LatencyTable
from nasbert.latency.measure import (
    gauge_reference_ms,
    load_student_folder,
    measure_model_at_usual_speed,
    speed_note,
)
from nasbert.latency.profile import profile_space
from nasbert.latency.validate import plot_validation, report_lines, validate
from search_space import SearchSpace


def _check_positive(args: argparse.Namespace) -> None:
    """Counts and times must be positive (checked here, so the error is one sentence, exit 2)."""
    for name in ("threads", "batch_size", "seq_len", "samples", "min_run_time", "rounds"):
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")


def _condition_arguments(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """Device, threads, batch, seq len, dtype; without defaults they mean 'the table's'."""
    parser.add_argument("--device", default="cpu" if defaults else None, help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help=f"torch intra-op threads (default: torch's, here {torch.get_num_threads()})")
    parser.add_argument("--batch-size", type=int, default=1 if defaults else None, help="default 1")
    parser.add_argument("--seq-len", type=int, default=128 if defaults else None, help="default 128")
    parser.add_argument("--dtype", default="float32" if defaults else None, choices=["float32", "float16", "bfloat16"])


def _timing_arguments(parser: argparse.ArgumentParser, default_s: float) -> None:
    parser.add_argument("--min-run-time", type=float, default=default_s,
                        help=f"seconds of timed runs per measurement (default {default_s})")
    parser.add_argument("--rounds", type=int, default=3,
                        help="split the timed runs into this many rounds, far apart in time and each at the "
                             "machine's usual speed, and keep their median (default 3)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="latency_command", required=True, metavar="STEP")

    p = sub.add_parser("profile", help="time every module of the space on this device into a lookup table")
    p.add_argument("--output", required=True, help="where to write the table (JSON), e.g. lut.json")
    p.add_argument("--space", help="JSON file of SearchSpace fields (default: NAS-BERT's space)")
    _condition_arguments(p, defaults=True)
    _timing_arguments(p, 0.9)
    p.set_defaults(latency_run=run_profile)

    p = sub.add_parser("calibrate", help="fit a correction of the table on random students measured end to end")
    p.add_argument("--lut", required=True, help="the table to calibrate (updated in place)")
    p.add_argument("--samples", type=int, default=30, help="random students to measure (default 30)")
    p.add_argument("--seed", type=int, default=1, help="seed of the students (default 1; validate uses 0)")
    _timing_arguments(p, 1.0)
    p.set_defaults(latency_run=run_calibrate)

    p = sub.add_parser("validate", help="measure random students end to end and report the table's accuracy")
    p.add_argument("--lut", required=True, help="the table to check (its figures are stored in it)")
    p.add_argument("--samples", type=int, default=30, help="random students to measure (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the students (default 0)")
    p.add_argument("--plot", help="predicted-vs-measured PNG (default: beside the table, <lut>.validation.png)")
    _timing_arguments(p, 1.0)
    p.set_defaults(latency_run=run_validate)

    p = sub.add_parser("measure", help="measure an exported student folder end to end")
    p.add_argument("student", help="a student folder (config.json, model.safetensors, code)")
    p.add_argument("--lut", help="also print the table's prediction for it (and use the table's conditions)")
    _condition_arguments(p, defaults=False)
    _timing_arguments(p, 1.0)
    p.set_defaults(latency_run=run_measure)

    p = sub.add_parser("predict", help="print the table's prediction for an arch")
    p.add_argument("arch", help="arch string, e.g. 256:M,F,S5,F,I,I/512:M,F,M,F,M,F/...")
    p.add_argument("--lut", required=True, help="the table")
    p.add_argument("--heads", nargs="*", default=["pooler"], help="heads to add (default: pooler, as NasbertModel)")
    p.set_defaults(latency_run=run_predict)


@command("latency", "per-op latency lookup table: profile, calibrate, validate, measure, predict", _add_arguments)
def run_latency(args: argparse.Namespace) -> int:
    _check_positive(args)
    return args.latency_run(args)


def run_profile(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    output = Path(args.output)
    if output.is_dir():
        raise UserError(f"--output {output} is a folder; give a file name such as {output / 'lut.json'}")
    table = profile_space(space, args.device, args.threads, args.batch_size, args.seq_len, args.dtype,
                          args.min_run_time, args.rounds, progress=not args.no_progress)
    table.save(output)
    print(f"profiled {len(table.entries())} entries in {table.profile['wall_ms'] / 1e3:.1f} s under "
          f"{table.conditions.describe()}; wrote {output}")
    print(speed_note(table.profile))
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    table = LatencyTable.load(args.lut)
    cal = calibrate(table, args.samples, args.seed, args.min_run_time, args.rounds,
                    progress=not args.no_progress)
    table.save(args.lut)
    factors = ", ".join(f"{k} x{v:.3f}" for k, v in cal.family_factor.items())
    print(f"calibrated on {len(cal.archs)} students (seed {cal.seed}): constant {cal.constant_ms:+.3f} ms, {factors}; "
          f"fit MAPE {cal.fit['fit_mape_percent']:.2f} %, max {cal.fit['fit_max_abs_error_percent']:.2f} %; "
          f"wrote {args.lut}")
    print(speed_note(cal.fit))
    return 0


def run_validate(args: argparse.Namespace) -> int:
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
    table = LatencyTable.load(args.lut) if args.lut else None
    if table is not None:
        cond = table.conditions
        asked = Conditions.current(args.device or cond.device, args.threads or cond.threads,
                                   args.batch_size or cond.batch_size, args.seq_len or cond.seq_len,
                                   args.dtype or cond.dtype)
        table.require(asked)
    else:
        asked = Conditions.current(args.device or "cpu", args.threads, args.batch_size or 1, args.seq_len or 128,
                                   args.dtype or "float32")
    model = load_student_folder(args.student)
    measured = measure_model_at_usual_speed(model, asked.batch_size, asked.seq_len, asked.threads, asked.device,
                                            asked.dtype, args.min_run_time, args.rounds, gauge_reference_ms(table))
    timing = measured.entries[0]
    print(f"{args.student}: {timing.median_ms:.3f} ms median (IQR {timing.iqr_ms:.3f} ms, {timing.runs_count} runs) "
          f"as {type(model).__name__}, {asked.describe()}")
    print(measured.note())
    config = model.config
    if table is not None and getattr(config, "arch", None) is not None:
        if not (config.embedding_projection and config.output_projection):
            print("no prediction: the table's students always have the E->w and w->H projections, this one does not")
            return 0
        table.check_space(_space_of(table, config))
        predicted = table.predict_ms(config.arch, MODEL_HEADS.get(type(model).__name__, ()))
        error = (predicted - timing.median_ms) / timing.median_ms * 100
        kind = "calibrated" if table.calibration is not None else "raw sum"
        print(f"predicted {predicted:.3f} ms ({kind}), error {error:+.1f} %")
    return 0


def _space_of(table: LatencyTable, config) -> SearchSpace:
    """The table's space with the student's own sizes, so a student of another shape is refused."""
    return replace(table.space, hidden_size=config.hidden_size, embedding_size=config.embedding_size,
                   head_dim=config.head_dim, ffn_ratio=config.ffn_ratio, vocab_size=config.vocab_size,
                   max_position_embeddings=config.max_position_embeddings, type_vocab_size=config.type_vocab_size)


def run_predict(args: argparse.Namespace) -> int:
    table = LatencyTable.load(args.lut)
    arch = table.space.validate(args.arch)
    raw = table.predict_ms(arch, args.heads, calibrated=False)
    line = f"{arch}: {raw:.3f} ms raw sum"
    if table.calibration is not None:
        line += f", {table.predict_ms(arch, args.heads, calibrated=True):.3f} ms calibrated"
    print(f"{line} ({table.conditions.describe()})")
    return 0

