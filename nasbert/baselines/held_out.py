"""Held-out training rows for `nasbert compare --held-out-rows`: a task score that picks among students without
looking at the dev set.

Every fine-tune of a comparison draws its training rows as `--max-train-samples N --seed s` (a seeded shuffle of
the training file), so each seed leaves rows out: the same rows for every model of that seed. Seed s's fine-tunes
are scored on --held-out-rows of the rows seed s left out (OUTPUT/held-out/seed{s}.tsv), and a model's held-out
score is the mean over its seeds. A user comparing several candidate students of one budget (the search's
leaders) can pick one by this score and still report the dev score honestly: the dev set took no part in the
choice. Rows left out per seed, not rows left out by every seed: with 3 seeds of 5,249 of STS-B's 5,749 rows,
each seed leaves 500 out, but only about 7 are left out by all three. (A recipe's teacher, fine-tuned once with
seed 0, saw seed 0's rows; the students of other seeds learn from its outputs on their own rows only.) On the
README's benchmark the search's block-loss ranking picked a student 2.3 points of SST-2 under the best of its top
3 at one budget of three; the held-out score picked the best leader at all three.
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


def check_room(train_file: Path, samples: int | None, count: int) -> int:
    """The row count of `train_file`, once it is clear that a draw of --max-train-samples `samples` leaves at least
    `count` rows out; else a UserError (a pick on a handful of rows would be a coin toss, reported as a choice)."""
    total = len(read_table(str(train_file), "training"))
    if samples is None or samples >= total:
        raise UserError(f"--held-out-rows: the fine-tunes draw every row of {train_file}; give --max-train-samples "
                        "below its row count so that some rows are left to score on")
    if total - samples < count:
        raise UserError(f"--held-out-rows {count}: a draw of --max-train-samples {samples} of the {total} rows of "
                        f"{train_file} leaves {total - samples} out; ask for at most {total - samples} held-out rows "
                        "or give a smaller --max-train-samples")
    return total


def left_out(total: int, samples: int, seed: int) -> np.ndarray:
    """The indices (sorted) of the rows of a `total`-row table that seed `seed`'s draw of `samples` leaves out."""
    from datasets import Dataset

    ids = Dataset.from_dict({"row_id": list(range(total))})  # a shuffle's permutation depends on the length only
    return np.setdiff1d(np.arange(total), subsample(ids, samples, seed)["row_id"])


def held_out_tables(train_file: Path, samples: int | None, seeds: int, count: int, folder: Path) -> list[Path]:
    """Write folder/seed{s}.tsv for s in 0 .. seeds-1 (tables like `train_file`, header first): `count` of the rows
    seed s's draw leaves out, chosen at random (seed s). A UserError, nothing written, when fewer are left out."""
    total = check_room(train_file, samples, count)
    lines = Path(train_file).read_text(encoding="utf-8").splitlines()
    if len(lines) != total + 1:  # a quoted field spanning lines: the rows are not one per line
        raise UserError(f"--held-out-rows needs {train_file} to hold one row per line after its header")
    folder.mkdir(parents=True, exist_ok=True)
    tables = []
    for seed in range(seeds):
        chosen = np.sort(np.random.default_rng(seed).choice(left_out(total, samples, seed), size=count,
                                                            replace=False))
        tables.append(folder / f"seed{seed}.tsv")
        tables[-1].write_text("\n".join([lines[0], *(lines[i + 1] for i in chosen)]) + "\n", encoding="utf-8")
    return tables


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


def held_out_mean(runs: list[Path], tables: list[Path], trusted: bool = False) -> tuple[float, str]:
    """(mean score, metric) of one model's fine-tunes (its seeds, in order) each on its seed's held-out table,
    tokenized as it was trained (the text and label columns and sequence length its run recorded)."""
    if len(runs) != len(tables):
        raise UserError(f"{len(runs)} fine-tunes but {len(tables)} held-out tables: one table per seed")
    scores, metric = [], ""
    for run, table in zip(runs, tables):
        settings = run_settings(run)
        options = settings.get("options") or {}
        if not settings.get("text_columns") or not options.get("label_column"):
            raise UserError(f"{run} does not record its text and label columns; fine-tune it again to score it on "
                            "held-out rows")
        value, metric = held_out_score(run, table, settings["text_columns"], options["label_column"],
                                       options.get("max_seq_len") or 128, trusted)
        scores.append(value)
    return float(np.mean(scores)), metric
