"""Sentence similarity without fine-tuning: every model of a `nasbert compare` run, scored zero-shot on STS-B.

Why: on STS-B the fine-tuned (cross-encoder) scores of the README's 1/4 and 1/8 students sit at Pearson 0.1-0.4
at every learning rate tried, while those students' own sentence embeddings already rank the dev pairs far
better. This measures that directly, with no seed and no fine-tuning in the way: each sentence is encoded alone,
its final hidden states mean-pooled over its real tokens (the padding left out), and the cosine of a pair's two
embeddings is compared with the gold score (Pearson and Spearman over the dev pairs). A sentence-transformers
teacher (all-MiniLM-L6-v2) is trained for exactly this use, so the students distilled from it inherit it.

    python bench/sts_zero_shot.py --compare W/compare-stsb --pairs ../shared/data/stsb/dev.tsv \
        --teacher TEACHER_DIR [--max-seq-len 64] [--output W/zero-shot-stsb.md]

The models, families, budgets, measured latencies and held-out picks are compare.json's (the fine-tuned teacher
of the run is left out: pass the pretrained one as --teacher). Prints a markdown table and, per budget, the
searched pick's zero-shot margin over the best baseline family; writes it to --output with a .json beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from scipy import stats

from nasbert.baselines.families import FAMILIES
from nasbert.errors import UserError
from nasbert.finetune.task import read_table


@torch.no_grad()
def sentence_embeddings(model, tokenizer, texts: list[str], max_seq_len: int, batch_size: int = 64) -> torch.Tensor:
    """(N, H): each text's final hidden states averaged over its real tokens (attention mask), [CLS] and [SEP]
    included, as sentence-transformers' mean pooling does."""
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start: start + batch_size], padding=True, truncation=True, max_length=max_seq_len,
                          return_tensors="pt")
        hidden = model(**batch).last_hidden_state  # (B, T, H)
        mask = batch["attention_mask"][..., None].to(hidden.dtype)  # (B, T, 1)
        out.append((hidden * mask).sum(1) / mask.sum(1))
    return torch.cat(out)


def zero_shot(folder: str, first: list[str], second: list[str], gold: list[float], max_seq_len: int
              ) -> dict[str, float]:
    """Pearson and Spearman of the pairs' embedding cosines against the gold scores, for the encoder at `folder`."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    a = sentence_embeddings(model, tokenizer, first, max_seq_len)
    b = sentence_embeddings(model, tokenizer, second, max_seq_len)
    cosine = torch.nn.functional.cosine_similarity(a, b).tolist()
    return {"pearson": float(stats.pearsonr(cosine, gold)[0]), "spearman": float(stats.spearmanr(cosine, gold)[0])}


def model_folder(folder: str, compare: Path) -> str:
    """A row's folder as compare.json names it: absolute, or relative to where `compare` ran (its parent, as a
    bench workdir keeps it) or to the comparison itself."""
    for candidate in (Path(folder), compare.parent / folder, compare / folder):
        if (candidate / "config.json").is_file():
            return str(candidate)
    raise UserError(f"the model folder {folder} named in {compare / 'compare.json'} is not there (moved?)")


def read_pairs(path: str, columns: list[str], label: str, limit: int | None
               ) -> tuple[list[str], list[str], list[float]]:
    table = read_table(path, "pairs")
    missing = [c for c in [*columns, label] if c not in table.column_names]
    if missing:
        raise UserError(f"{path} has no column {missing[0]!r} (it has {', '.join(table.column_names)})")
    if limit:
        table = table.select(range(min(limit, len(table))))
    return list(table[columns[0]]), list(table[columns[1]]), [float(x) for x in table[label]]


def margins(rows: list[dict]) -> list[dict]:
    """Per budget: the searched student picked by the comparison (else each searched one) against the baseline
    family member with the best zero-shot Pearson."""
    found = []
    for budget in sorted({r["latency_budget_ms"] for r in rows if r.get("latency_budget_ms")}, reverse=True):
        here = [r for r in rows if r.get("latency_budget_ms") == budget]
        families = [r for r in here if r["family"] in FAMILIES]
        searched = [r for r in here if r["family"] == "searched"]
        if not families or not searched:
            continue
        best = max(families, key=lambda r: r["zero_shot"]["pearson"])
        for student in [r for r in searched if r.get("picked")] or searched:
            found.append({"budget_ms": budget, "searched": student["name"], "baseline": best["name"],
                          "margin": student["zero_shot"]["pearson"] - best["zero_shot"]["pearson"]})
    return found


def markdown(rows: list[dict], found: list[dict], pairs: int) -> str:
    lines = [f"STS-B zero-shot: cosine of mean-pooled sentence embeddings against the gold score, {pairs} pairs; "
             "fine-tuned: the comparison's mean over seeds", "",
             "| model | family | budget | measured ms | zero-shot pearson | zero-shot spearman | fine-tuned |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        budget = f"{r['latency_budget_ms']:.3f} ms" if r.get("latency_budget_ms") else "-"
        measured = f"{r['measured_ms']:.3f}" if r.get("measured_ms") else "-"
        tuned = f"{r['mean']:.4f}" if r.get("mean") is not None else "-"
        name = r["name"] + (" (picked)" if r.get("picked") else "")
        lines.append(f"| {name} | {r['family']} | {budget} | {measured} | {r['zero_shot']['pearson']:.4f} | "
                     f"{r['zero_shot']['spearman']:.4f} | {tuned} |")
    lines += ["", "| budget | searched | best family (zero-shot) | margin |", "| --- | --- | --- | --- |"]
    lines += [f"| {m['budget_ms']:.3f} ms | {m['searched']} | {m['baseline']} | {m['margin']:+.4f} |" for m in found]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", required=True, help="a `nasbert compare` output folder (its compare.json)")
    parser.add_argument("--pairs", required=True, help="sentence pairs with a gold score, e.g. stsb/dev.tsv")
    parser.add_argument("--teacher", help="the pretrained teacher, scored alongside (optional)")
    parser.add_argument("--text-columns", nargs=2, default=["sentence1", "sentence2"])
    parser.add_argument("--label-column", default="score")
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--max-pairs", type=int, help="only the first N pairs")
    parser.add_argument("--output", help="write the table here (markdown) and the figures beside it (.json)")
    args = parser.parse_args(argv)
    try:
        payload_file = Path(args.compare) / "compare.json"
        if not payload_file.is_file():
            raise UserError(f"{args.compare} holds no compare.json: give a finished `nasbert compare` folder")
        try:
            payload = json.loads(payload_file.read_text())
        except json.JSONDecodeError as error:
            raise UserError(f"{payload_file} is not valid JSON ({error.msg}, line {error.lineno})") from None
        first, second, gold = read_pairs(args.pairs, args.text_columns, args.label_column, args.max_pairs)
        rows = [dict(m) for m in payload["models"] if m["family"] != "teacher"]
        if args.teacher:
            rows.insert(0, {"name": "teacher (pretrained)", "family": "teacher", "folder": args.teacher})
        for row in rows:
            print(f"scoring {row['name']} ...", file=sys.stderr)
            folder = model_folder(row["folder"], Path(args.compare))
            row["zero_shot"] = zero_shot(folder, first, second, gold, args.max_seq_len)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    found = margins(rows)
    text = markdown(rows, found, len(gold))
    print(text)
    if args.output:
        Path(args.output).write_text(text)
        Path(args.output).with_suffix(".json").write_text(json.dumps(
            {"pairs": args.pairs, "count": len(gold), "max_seq_len": args.max_seq_len, "models": rows,
             "margins": found}, indent=1))


if __name__ == "__main__":
    main()
