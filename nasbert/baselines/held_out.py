"""Held-out training rows for `nasbert compare --held-out-rows`: a task score that picks among students without
looking at the dev set.

Every fine-tune of a comparison draws its training rows as `--max-train-samples N --seed s` (a seeded shuffle of
the training file); the rows that no seed drew are free. Each fine-tuned model is scored on the same free rows,
so a user comparing several candidate students of one budget (the search's leaders) can pick one by this score
and still report the dev score honestly: the dev set took no part in the choice. On the README's benchmark the
search's block-loss ranking picked a student 2.3 points of SST-2 under the best of its top 3 at one budget of
three; the held-out score picked the best leader at all three.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nasbert.baselines.report import run_settings
from nasbert.errors import UserError
from nasbert.finetune.models import load_fine_tuned, load_tokenizer
from nasbert.finetune.task import read_table, subsample

BATCH = 64


def free_rows(train_file: Path, samples: int | None, seeds: int, count: int) -> tuple[np.ndarray, int]:
    """(indices, row count): the indices of `train_file`'s rows that no fine-tune with --max-train-samples
    `samples` and a seed in 0 .. seeds-1 draws, and how many rows it has. A UserError when fewer than `count` are
    free (a pick on a handful of rows would be a coin toss, reported as a choice)."""
    rows = read_table(str(train_file), "training")
    numbered = rows.add_column("row_id", list(range(len(rows))))  # a shuffle's permutation depends on length only
    drawn = np.unique([i for seed in range(seeds) for i in subsample(numbered, samples, seed)["row_id"]])
    free = np.setdiff1d(np.arange(len(rows)), drawn)
    if len(free) == 0:
        raise UserError(f"--held-out-rows: the fine-tunes draw every row of {train_file}; give --max-train-samples "
                        "below its row count so that some rows are left to score on")
    if len(free) < count:  # e.g. STS-B: 3 seeds of 5,249 of its 5,749 rows leave about 7 drawn by none
        raise UserError(f"--held-out-rows {count}: only {len(free)} of the {len(rows)} rows of {train_file} are drawn "
                        f"by no seed ({seeds} seed(s) x --max-train-samples {samples}); ask for at most {len(free)} "
                        "held-out rows or give a smaller --max-train-samples")
    return free, len(rows)


def held_out_rows(train_file: Path, samples: int | None, seeds: int, count: int, output: Path) -> int:
    """Write to `output` (a table like `train_file`, header first) `count` of its `free_rows`, chosen at random
    (seed 0); returns `count`. A UserError (nothing written) when fewer are free."""
    free, total = free_rows(train_file, samples, seeds, count)
    chosen = np.sort(np.random.default_rng(0).choice(free, size=count, replace=False))
    lines = Path(train_file).read_text(encoding="utf-8").splitlines()
    if len(lines) != total + 1:  # a quoted field spanning lines: the rows are not one per line
        raise UserError(f"--held-out-rows needs {train_file} to hold one row per line after its header")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join([lines[0], *(lines[i + 1] for i in chosen)]) + "\n", encoding="utf-8")
    return len(chosen)


@torch.no_grad()
def held_out_score(run: Path, table: Path, text_columns: list[str], label_column: str, max_seq_len: int,
                   trusted: bool = False) -> tuple[float, str]:
    """(score, "accuracy" or "pearson"): one fine-tuned classifier's accuracy or regressor's Pearson correlation
    on `table`, each row tokenized as in fine-tuning (its text columns, truncated to max_seq_len)."""
    model, tokenizer = load_fine_tuned(run, trusted), load_tokenizer(run, "fine-tuned", trusted)
    rows = read_table(str(table), "held-out")
    logits = []
    for start in range(0, len(rows), BATCH):
        batch = rows[start:start + BATCH]
        encoded = tokenizer(*(batch[c] for c in text_columns), truncation=True, max_length=max_seq_len,
                            padding=True, return_tensors="pt")
        logits.append(model(**encoded).logits)  # (B, labels); (B, 1) for a regressor
    predicted = torch.cat(logits)
    if model.config.problem_type == "regression":
        truth = np.asarray(rows[label_column], dtype=float)
        return float(np.corrcoef(predicted[:, 0].numpy(), truth)[0, 1]), "pearson"
    label2id = model.config.label2id
    unknown = sorted({str(v) for v in rows[label_column]} - set(label2id))
    if unknown:
        raise UserError(f"held-out rows of {table} carry label {unknown[0]!r}, which {run} was not trained on")
    truth = torch.tensor([label2id[str(value)] for value in rows[label_column]])
    return float((predicted.argmax(-1) == truth).float().mean()), "accuracy"


def held_out_mean(runs: list[Path], table: Path, trusted: bool = False) -> tuple[float, str]:
    """(mean score, metric) of one model's fine-tunes (its seeds) on `table`, each tokenized as it was trained
    (the text and label columns and sequence length its run recorded)."""
    scores, metric = [], ""
    for run in runs:
        settings = run_settings(run)
        options = settings.get("options") or {}
        if not settings.get("text_columns") or not options.get("label_column"):
            raise UserError(f"{run} does not record its text and label columns; fine-tune it again to score it on "
                            "held-out rows")
        value, metric = held_out_score(run, table, settings["text_columns"], options["label_column"],
                                       options.get("max_seq_len") or 128, trusted)
        scores.append(value)
    return float(np.mean(scores)), metric
