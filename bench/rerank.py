"""Issue 15's lever "re-rank the search's top-K after a short refinement" (Minitron, Puzzle), measured.

The search ranks its leaders by block-wise loss before any distillation. This benchmark takes each budget's
measured leaders (the search's top K that measured within the budget), exports every one the way the searched
student is exported (ETD-Impt init, the same refinement), then asks two questions:

 1. does a post-refinement score rank the leaders the way their fine-tuned task scores (on the dev set) do?
    Scores: the final hidden-state MSE to the teacher and the masked-LM cross-entropy of the student's head
    (fixed masks), both on held-out text; the refinement's own training loss over its last 50 steps; and the
    task score itself on held-out *training* rows (--held-out-rows, per seed rows that seed's fine-tuning
    subset left out, so picking by it never looks at the dev set), of the same fine-tunes;
 2. would picking the best leader by that score beat the search's rank 1 on the task?

It runs inside a finished `bench/pareto.py` workdir (its supernet, table, searches, exported rank-1 students and
comparison), so the rank-1 students' fine-tunes and the teacher's are reused, not redone:

    python bench/rerank.py --workdir bench_runs/pareto --searches search-MFxM-0.5.json search-MFxM-0.25.json \
        --compare compare2ep-sst2 [--top 3] [the fine-tune flags pareto.py ran with]

Writes WORKDIR/rerank.json and rerank.md; every command it runs is printed first; each stage is skipped when its
output exists (run it again to continue).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from pareto import SHARED, TASKS, call, default_teacher, leaders, settings
from scipy.stats import spearmanr

HELD_OUT_SEQUENCES = 256  # WikiText-2 valid sequences scored per student


def held_out_task_error(runs: Path, name: str, tables: list[Path]) -> float:
    """1 - the held-out task score (accuracy, or Pearson) of a model's fine-tunes (runs/NAME/seedK, each on
    tables[K]), averaged over its seeds: lower is better, like the other proxies."""
    from nasbert.baselines.held_out import held_out_mean

    return 1.0 - held_out_mean([runs / name / f"seed{k}" for k in range(len(tables))], tables)[0]


@torch.no_grad()
def held_out_scores(student_folder: Path, ids: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor,
                    teacher_states: torch.Tensor) -> dict:
    """Final hidden MSE to the teacher and masked-LM cross-entropy on held-out sequences, ids (N, T)."""
    from nasbert.modeling_nasbert import NasbertForMaskedLM

    student = NasbertForMaskedLM.from_pretrained(student_folder).eval()
    mse, ce, tokens = 0.0, 0.0, 0
    for start in range(0, len(ids), 32):
        batch = slice(start, start + 32)
        states = student.nasbert(ids[batch]).last_hidden_state  # (B, T, H), the teacher's width
        mse += torch.nn.functional.mse_loss(states, teacher_states[batch], reduction="sum").item()
        logits = student(masked[batch]).logits  # (B, T, V)
        ce += torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels[batch].flatten(), ignore_index=-100,
                                                reduction="sum").item()
        tokens += int((labels[batch] != -100).sum())
    return {"final_hidden_mse": mse / teacher_states.numel(), "mlm_ce": ce / tokens}


def refine_tail_loss(student_folder: Path, steps: int = 50) -> float | None:
    """The refinement's mean training `total` over its last `steps` steps (free: read from its metrics.jsonl)."""
    metrics = Path(str(student_folder) + ".refine") / "metrics.jsonl"
    if not metrics.is_file():
        return None
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if '"losses"' in line]
    totals = [next(iter(r["losses"].values()))["total"] for r in rows[-steps:]]
    return float(np.mean(totals)) if totals else None


def held_out_batch(teacher_name: str, text: Path, seq_len: int):
    """HELD_OUT_SEQUENCES packed sequences (N, T), their fixed masks and labels, and the teacher's states (N, T, H)."""
    from transformers import AutoModel, AutoTokenizer

    from nasbert.common.masking import Masker

    tokenizer = AutoTokenizer.from_pretrained(teacher_name)
    teacher = AutoModel.from_pretrained(teacher_name).eval()
    lines = [line for line in text.read_text().splitlines() if line.strip()]
    pieces = tokenizer(lines, add_special_tokens=False)["input_ids"]
    flat = [t for p in pieces for t in p][: HELD_OUT_SEQUENCES * (seq_len - 2)]
    rows = [[tokenizer.cls_token_id, *flat[i:i + seq_len - 2], tokenizer.sep_token_id]
            for i in range(0, len(flat) - seq_len + 2, seq_len - 2)]
    ids = torch.tensor(rows)  # (N, T)
    masked, labels = Masker(tokenizer, 0.15, seed=0).with_labels(ids)
    with torch.no_grad():
        states = torch.cat([teacher(ids[i:i + 32]).last_hidden_state for i in range(0, len(ids), 32)])
    return ids, masked, labels, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench_runs/pareto")
    parser.add_argument("--searches", nargs="+", required=True, help="search-*.json files in WORKDIR, one budget each")
    parser.add_argument("--compare", required=True, help="the comparison folder in WORKDIR whose settings to "
                        "reuse (its teacher and rank-1 fine-tunes are linked, not redone)")
    parser.add_argument("--task", default="sst2", choices=list(TASKS))
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--corpus", default=str(SHARED / "wikitext-2"))
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--refine-steps", type=int, default=200)
    parser.add_argument("--refine-batch-size", type=int, default=16)
    parser.add_argument("--finetune-train-samples", type=int, default=2000)
    parser.add_argument("--finetune-epochs", type=float, default=2.0)
    parser.add_argument("--finetune-lr", type=float, default=3e-4)
    parser.add_argument("--finetune-seq-len", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--held-out-rows", type=int, default=2000,
                        help="per seed, training rows its fine-tunes left out, scored by each fine-tuned leader")
    parser.set_defaults(smoke=False, supernet_steps=600)  # what pareto.settings reads besides the flags above
    args = parser.parse_args()
    flags = settings(args)  # the refinement and fine-tuning flags of bench/pareto.py, so the two cannot drift
    work = Path(args.workdir).resolve()
    teacher_name = args.teacher or default_teacher()
    corpus = Path(args.corpus)
    log: dict = {}
    refine = [*flags["refine"], "--train-file", str(corpus / "train.txt")]

    # 1. every leader exported like the searched student (rank 1 is the pareto run's own export)
    candidates = []
    for name in args.searches:
        search = work / name
        tag_fraction = search.stem.removeprefix("search-")  # e.g. MFxM-0.5
        tag, fraction = tag_fraction.rsplit("-", 1)
        for leader in leaders(search, args.top):
            if leader["rank"] == 1:
                folder = work / "searched" / f"searched-{tag}-etd-impt-{fraction}"
            else:
                folder = work / "rerank" / f"rerank-{tag}-r{leader['rank']}-{fraction}"
                if not (folder / "config.json").exists():
                    resume = ["--resume"] if Path(str(folder) + ".refine").exists() else []
                    # --search/--rank (as bench/pareto.py --leaders): the folder records its search and budget,
                    # so `nasbert compare --held-out-rows` sees it as one of that budget's searched leaders
                    call(f"export {folder.name}", ["export", str(work / "supernet"), "--search", str(search),
                                                   "--rank", str(leader["rank"]), "--init", "etd-impt", "--lut",
                                                   str(work / "lut.json"), "--output", str(folder), *refine,
                                                   *resume], log)
            candidates.append({"budget": f"1/{1 / float(fraction):g}", "fraction": float(fraction), "tag": tag,
                               "rank": leader["rank"], "arch": leader["arch"], "folder": str(folder),
                               "search_loss": leader.get("rechecked_loss", leader["approx_loss"]),
                               "search_measured_ms": leader["measured_latency_ms"]})

    # 2. the post-refinement scores on held-out text
    held_out = held_out_batch(teacher_name, corpus / "valid.txt", args.seq_len)
    for c in candidates:
        c.update(held_out_scores(Path(c["folder"]), *held_out))
        c["refine_tail_loss"] = refine_tail_loss(Path(c["folder"]))
        print(f"{c['budget']} rank {c['rank']} {c['arch']}: hidden MSE {c['final_hidden_mse']:.4f}, MLM CE "
              f"{c['mlm_ce']:.3f}, refine tail {c['refine_tail_loss']}", flush=True)

    # 3. the task scores: `nasbert compare` with the kept teacher and rank-1 fine-tunes linked in
    kept, output = work / args.compare, work / f"rerank-{args.task}"
    for c in candidates:
        name = Path(c["folder"]).name
        for source in ("teacher", name):
            if (kept / "runs" / source).is_dir() and not (output / "runs" / source).exists():
                (output / "runs").mkdir(parents=True, exist_ok=True)
                shutil.copytree(kept / "runs" / source, output / "runs" / source, copy_function=os.link)
    data = SHARED / args.task
    call(f"compare {args.task}", ["compare", "--students", *(c["folder"] for c in candidates), "--teacher",
                                  teacher_name, "--train-file", str(data / "train.tsv"), "--validation-file",
                                  str(data / "dev.tsv"), "--output", str(output), "--seeds", str(args.seeds),
                                  "--lut", str(work / "lut.json"), "--report-to", "none", *TASKS[args.task]["flags"],
                                  *flags["compare"]], log)
    rows = {Path(m["folder"]).name: m for m in json.loads((output / "compare.json").read_text())["models"]}
    for c in candidates:
        model = rows[Path(c["folder"]).name]
        c.update(task_mean=model["mean"], task_min=model["min"], task_max=model["max"],
                 side_by_side_ms=model["measured_ms"])
    # 4. the task score of the same fine-tunes on training rows their seed's draw left out
    from nasbert.baselines.held_out import held_out_tables

    tables = held_out_tables(data / "train.tsv", args.finetune_train_samples, args.seeds, args.held_out_rows,
                             work / f"held-out-{args.task}")
    for c in candidates:
        c["held_out_task_error"] = held_out_task_error(output / "runs", Path(c["folder"]).name, tables)
    # 5. the same held-out scores for every student of the kept comparison: do they order the families too?
    others = [{"name": m["name"], "task_mean": m["mean"], "measured_ms": m["measured_ms"],
               **held_out_scores(Path(m["folder"]), *held_out),
               "held_out_task_error": held_out_task_error(kept / "runs", m["name"], tables)}
              for m in json.loads((kept / "compare.json").read_text())["models"] if m["family"] != "teacher"]
    report(work, candidates, others, args.task)


PROXIES = ("search_loss", "final_hidden_mse", "mlm_ce", "refine_tail_loss", "held_out_task_error")  # lower: better


def report(work: Path, candidates: list[dict], others: list[dict], task: str) -> None:
    """rerank.md / rerank.json: per budget, each leader's scores; what each proxy would pick; rank agreement;
    the held-out scores of every student of the kept comparison."""
    lines = [f"# Re-ranking the search's measured leaders after refinement ({task}, mean [min, max] of seeds)", "",
             "| budget | rank | arch | search loss | hidden MSE | MLM CE | refine tail | held-out error | "
             f"measured ms | {task} |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    proxies = [p for p in PROXIES if all(c[p] is not None for c in candidates)]  # refine tail: refined leaders only
    picks = {}
    for fraction in sorted({c["fraction"] for c in candidates}, reverse=True):
        group = [c for c in candidates if c["fraction"] == fraction]
        budget = group[0]["budget"]
        for c in group:
            lines.append(f"| {budget} | {c['rank']} | `{c['arch']}` | {c['search_loss']:.4f} | "
                         f"{c['final_hidden_mse']:.4f} | {c['mlm_ce']:.3f} | {_score(c['refine_tail_loss'])} | "
                         f"{c['held_out_task_error']:.4f} | {c['side_by_side_ms']:.2f} | "
                         f"{c['task_mean']:.4f} [{c['task_min']:.4f}, {c['task_max']:.4f}] |")
        best = max(group, key=lambda c: c["task_mean"])
        picked = {p: min(group, key=lambda c: c[p]) for p in proxies}  # each proxy's choice: its lowest
        picks[budget] = {p: c["rank"] for p, c in picked.items()}
        lines.append("")
        lines.append(f"- {budget}: best on {task} is rank {best['rank']}; each proxy picks rank " + ", ".join(
            f"{p} {c['rank']} ({c['task_mean'] - group[0]['task_mean']:+.4f} vs rank 1)" for p, c in picked.items()))
        lines.append("")
    correlation = {p: float(spearmanr([c[p] for c in candidates], [-c["task_mean"] for c in candidates])[0])
                   for p in proxies}
    lines.append("Spearman correlation of each proxy with the task score over all leaders (+1: a lower proxy always "
                 "means a higher task score; -1: the reverse): "
                 + ", ".join(f"{p} {r:+.2f}" for p, r in correlation.items()))
    lines += ["", f"Every student of the kept comparison (all families), held-out scores against {task}:", "",
              f"| student | measured ms | hidden MSE | MLM CE | held-out error | {task} |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {o['name']} | {o['measured_ms']:.2f} | {o['final_hidden_mse']:.4f} | {o['mlm_ce']:.3f} | "
              f"{o['held_out_task_error']:.4f} | {o['task_mean']:.4f} |"
              for o in sorted(others, key=lambda o: o["final_hidden_mse"])]
    across = {p: float(spearmanr([o[p] for o in others], [-o["task_mean"] for o in others])[0])
              for p in ("final_hidden_mse", "mlm_ce", "held_out_task_error")}
    lines.append("\nSpearman over them (the same sign): " + ", ".join(f"{p} {r:+.2f}" for p, r in across.items()))
    (work / "rerank.md").write_text("\n".join(lines) + "\n")
    (work / "rerank.json").write_text(json.dumps({"candidates": candidates, "picks": picks, "spearman": correlation,
                                                  "others": others, "spearman_others": across}, indent=1))
    print("\n".join(lines))


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"  # None: a leader exported without refinement


if __name__ == "__main__":
    main()
