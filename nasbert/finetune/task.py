"""Task data: read a TSV / CSV / JSON-lines file, detect text and label columns, tokenize."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from nasbert.errors import UserError
from nasbert.finetune.config import TEXT_COLUMN_CANDIDATES, FinetuneConfig, Task


def read_table(path: str, split: str):
    """A GLUE-style TSV (header row, no quoting), CSV or JSON lines file as a datasets.Dataset."""
    from datasets import load_dataset

    file = Path(path)
    if not file.is_file():
        raise UserError(f"{split} file {file} does not exist")
    suffix = file.suffix.lower()
    if suffix in (".tsv", ".csv"):
        # GLUE TSVs hold raw quotes in sentences (quoting off); na_filter off keeps "null" / "NA" texts as text.
        kwargs = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if suffix == ".tsv" else {}
        check_rows(file, split, **kwargs)
        builder, kwargs = "csv", {**kwargs, "na_filter": False}
    elif suffix in (".json", ".jsonl"):
        builder, kwargs = "json", {}
    else:
        raise UserError(f"{split} file {file} is not .tsv, .csv, .json or .jsonl; convert it to one of those")
    try:
        dataset = load_dataset(builder, data_files=str(file), split="train", **kwargs)
    except Exception as error:  # anything the parser says about the user's file
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"could not read {split} file {file}: {message}") from None
    if len(dataset) == 0:
        raise UserError(f"{split} file {file} has no rows")
    return dataset


def check_rows(file: Path, split: str, **dialect: Any) -> None:
    """Every row of a TSV / CSV file has as many fields as its header row (a missing field, or a separator inside
    quotes in a TSV, would shift or drop columns silently); the file must be UTF-8 text."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long texts are fields too
    try:
        with open(file, newline="", encoding="utf-8") as stream:
            rows = ((n, row) for n, row in enumerate(csv.reader(stream, **dialect), start=1) if row)
            _, header = next(rows, (0, []))
            for line, row in rows:
                if len(row) != len(header):
                    hint = " (a tab inside quotes? GLUE-style TSVs are not quoted)" if '"' in "".join(row) else ""
                    raise UserError(f"{split} file {file} row {line} has {len(row)} fields but its header has "
                                    f"{len(header)}{hint}; every row needs one value per column")
    except UnicodeDecodeError:
        raise UserError(f"{split} file {file} is not UTF-8 text; convert it to UTF-8") from None
    except csv.Error as error:
        raise UserError(f"could not read {split} file {file}: {error}") from None


def detect_text_columns(columns: list[str], label_column: str, string_columns: list[str]) -> list[str]:
    """GLUE-style names first (sentence1/sentence2, question/sentence, sentence, ...), else the 1-2 text columns."""
    for candidate in TEXT_COLUMN_CANDIDATES:
        if all(c in columns for c in candidate):
            return list(candidate)
    others = [c for c in string_columns if c != label_column]
    if 1 <= len(others) <= 2:
        return others
    raise UserError(f"no text column found among {columns}; name one or two with --text-columns")


def resolve_task(train, validation, config: FinetuneConfig, files: dict[str, str]) -> Task:
    """Check the columns of both splits and decide the text columns, classification or regression, the labels."""
    for split, dataset in (("training", train), ("validation", validation)):
        if config.label_column not in dataset.column_names:
            if any(_is_number(name) for name in dataset.column_names):
                raise UserError(f"{split} file {files[split]} has no header row (its first row, "
                                f"{', '.join(map(str, dataset.column_names))}, holds values); add one naming the "
                                f"columns, e.g. sentence and {config.label_column}")
            raise UserError(f"{split} file {files[split]} has no label column {config.label_column!r} "
                            f"(columns: {', '.join(dataset.column_names)}); name it with --label-column")
        empty = [n for n, value in enumerate(dataset[config.label_column], start=1)
                 if value is None or not str(value).strip()]
        if empty:
            raise UserError(f"{split} file {files[split]} has {len(empty)} rows without a label (the first is data row "
                            f"{empty[0]}); give every row a label or remove those rows")
    if config.text_columns:
        text_columns = list(config.text_columns)
        if not 1 <= len(text_columns) <= 2:
            raise UserError(f"--text-columns takes one or two columns (a sentence or a pair), not {len(text_columns)}")
    else:
        strings = [name for name, feature in train.features.items() if getattr(feature, "dtype", None) == "string"]
        text_columns = detect_text_columns(train.column_names, config.label_column, strings)
    for split, dataset in (("training", train), ("validation", validation)):
        missing = [c for c in text_columns if c not in dataset.column_names]
        if missing:
            raise UserError(f"{split} file {files[split]} has no text column {missing[0]!r} "
                            f"(columns: {', '.join(dataset.column_names)})")
    dtype = getattr(train.features[config.label_column], "dtype", None)
    regression = config.task == "regression" or (config.task == "auto" and dtype in ("float16", "float32", "float64"))
    if regression:
        for split, dataset in (("training", train), ("validation", validation)):
            try:
                [float(v) for v in dataset[config.label_column]]
            except (TypeError, ValueError):
                raise UserError(f"{split} labels in column {config.label_column!r} of {files[split]} are not all "
                                "numbers, so this cannot be a regression task") from None
        return Task(text_columns, config.label_column, None)
    names = sorted({label_name(v) for v in train[config.label_column]}, key=_label_order)
    if len(names) < 2:
        raise UserError(f"training file {files['training']} has a single label value ({names[0]}); "
                        "a classifier needs at least two")
    unknown = sorted({label_name(v) for v in validation[config.label_column]} - set(names), key=_label_order)
    if unknown:
        raise UserError(f"validation label {unknown[0]!r} never occurs in the training file {files['training']}")
    return Task(text_columns, config.label_column, names)


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def label_name(value: Any) -> str:
    """The class name of a label value: 1, 1.0 and "1" are the same class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _label_order(name: str):
    """Numbers in numeric order (so ids 0..k-1 keep their ids), then names in alphabetical order."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def encode(dataset, tokenizer, task: Task, max_seq_len: int):
    """Tokenize (batched) into input_ids / attention_mask (/ token_type_ids) + labels; drop the other columns."""
    label_ids = None if task.regression else {name: i for i, name in enumerate(task.labels)}

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        texts = [["" if t is None else str(t) for t in batch[c]] for c in task.text_columns]
        encoded = tokenizer(*texts, truncation=True, max_length=max_seq_len)
        values = batch[task.label_column]
        encoded["labels"] = ([float(v) for v in values] if label_ids is None
                             else [label_ids[label_name(v)] for v in values])
        return encoded

    return dataset.map(tokenize, batched=True, remove_columns=dataset.column_names, desc="tokenize")


def subsample(dataset, count: int | None, seed: int):
    """A seeded random subset of `count` rows (all rows when count is None or larger)."""
    if count is None or count >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(count))
