"""Corpora for distillation: local text files (or a hub dataset) -> tokenised, packed sequences.

    files ──load_dataset──► text rows ──tokenize (batched, cached map)──► ids ──pack──► (N, seq_len) blocks
                                                                             [CLS] t_1 .. t_{seq_len-2} [SEP]

Packing leaves no padding in training batches. `.txt` files are read line by line (blank lines dropped);
`.jsonl`/`.json` and `.csv`/`.tsv` take the text from `text_column`.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import torch
from datasets import Dataset, DatasetDict, load_dataset

from nasbert.common.corpus import CorpusOptions
from nasbert.errors import UserError

_LOADERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv"}

# What build_corpus reads: the corpus fields, declared once in CorpusOptions (a config's `corpus_spec()`).
CorpusSpec = CorpusOptions


def _loader_for(files: list[str]) -> tuple[str, dict]:
    suffixes = {Path(f).suffix.lower() for f in files}
    kinds = {_LOADERS.get(s) for s in suffixes}
    if None in kinds:
        raise UserError(f"cannot read {sorted(suffixes)} files; use .txt, .jsonl, .json, .csv or .tsv")
    if len(kinds) > 1:
        raise UserError(f"the files mix formats {sorted(suffixes)}; pass files of one format")
    kind = kinds.pop()
    options = {"delimiter": "\t"} if suffixes == {".tsv"} else {}
    return kind, options


def load_text(files: list[str], text_column: str = "text") -> Dataset:
    """Rows with a `text` column from local files, or from a hub dataset when `files` is one name with no file."""
    if not files:
        raise UserError("no training corpus given; pass --train-file")
    local = [f for f in files if Path(f).exists()]
    if not local and len(files) == 1 and not Path(files[0]).suffix:
        try:  # a hub dataset name, where a network exists
            data = load_dataset(files[0], split="train")
        except Exception as error:  # noqa: BLE001 - any failure to fetch is the user's to fix
            raise UserError(f"{files[0]} is neither a file nor a dataset that could be loaded ({error})") from None
    else:
        missing = [f for f in files if not Path(f).exists()]
        if missing:
            raise UserError(f"corpus file {missing[0]} does not exist")
        kind, options = _loader_for(files)
        empty = [f for f in files if Path(f).stat().st_size == 0]
        if empty:
            raise UserError(f"corpus file {empty[0]} is empty")
        for f in files:
            check_utf8_text(f)
        try:
            data = load_dataset(kind, data_files={"train": files}, split="train", **options)
        except Exception as error:  # noqa: BLE001 - a file the parser cannot read is the user's to fix
            message = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise UserError(f"could not read the corpus {', '.join(files)} as {kind} ({message})") from None
    if text_column not in data.column_names:
        raise UserError(f"the corpus has no column {text_column!r} (it has {data.column_names}); "
                        f"pass --text-column")
    if text_column != "text":
        data = data.rename_column(text_column, "text")
    data = data.select_columns(["text"]).filter(lambda b: [bool(t and t.strip()) for t in b["text"]], batched=True)
    if len(data) == 0:
        raise UserError(f"the corpus {', '.join(files)} holds no text")
    return data


def check_utf8_text(file: str | Path, chunk_bytes: int = 1 << 20) -> None:
    """Refuse a file that is not UTF-8 text (Latin-1, binary: an invalid sequence or a NUL byte), read in chunks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    text = True
    with open(file, "rb") as stream:
        while text and (chunk := stream.read(chunk_bytes)):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                text = False
            text = text and b"\0" not in chunk
    try:
        decoder.decode(b"", final=True)  # a file that ends inside a character
    except UnicodeDecodeError:
        text = False
    if not text:
        raise UserError(f"corpus file {file} is not UTF-8 text; convert it (e.g. iconv -f latin1 -t utf-8) or pass "
                        "another file")


def tokenize_and_pack(data: Dataset, tokenizer, seq_len: int, desc: str = "tokenising") -> Dataset:
    """Tokenise in a batched, cached map, then pack into rows of exactly `seq_len` ids."""
    if seq_len < 8:
        raise UserError(f"--seq-len must be at least 8, got {seq_len}")
    body = seq_len - 2

    def tokenize(batch):
        return {"ids": tokenizer(batch["text"], add_special_tokens=False)["input_ids"]}

    def pack(batch):
        flat = [token for ids in batch["ids"] for token in ids]
        rows = [[tokenizer.cls_token_id, *flat[i: i + body], tokenizer.sep_token_id]
                for i in range(0, len(flat) - body + 1, body)]
        return {"input_ids": rows}

    tokens = data.map(tokenize, batched=True, remove_columns=["text"], desc=desc)
    return tokens.map(pack, batched=True, batch_size=1000, remove_columns=["ids"], desc="packing")


def build_corpus(spec: CorpusSpec, tokenizer, seed: int = 0) -> DatasetDict:
    """Train and validation sets of packed sequences (validation: its own files, or a held-out fraction)."""
    for name in ("cls_token_id", "sep_token_id", "pad_token_id"):
        if getattr(tokenizer, name, None) is None:
            raise UserError(f"the teacher's tokenizer has no {name.removesuffix('_id')} token; "
                            f"nasbert needs a BERT-style tokenizer")
    train = tokenize_and_pack(load_text(spec.train_files, spec.text_column), tokenizer, spec.seq_len)
    if spec.validation_files:
        validation = tokenize_and_pack(load_text(spec.validation_files, spec.text_column), tokenizer, spec.seq_len)
    else:
        if not 0 < spec.validation_fraction < 1:
            raise UserError("--validation-fraction must be between 0 and 1 when no --validation-file is given")
        if len(train) < 2:
            raise UserError("the corpus is too small to hold out a validation split; add text or a validation file")
        split = train.train_test_split(test_size=spec.validation_fraction, seed=seed, shuffle=True)
        train, validation = split["train"], split["test"]
    if len(train) == 0:
        raise UserError(f"the corpus holds fewer than {spec.seq_len} tokens; add text or lower --seq-len")
    if len(validation) == 0:
        raise UserError("the validation split is empty; add text, a validation file or raise --validation-fraction")
    if spec.max_train_sequences:
        train = train.select(range(min(len(train), spec.max_train_sequences)))
    if spec.max_validation_sequences:
        validation = validation.select(range(min(len(validation), spec.max_validation_sequences)))
    return DatasetDict(train=train.with_format("torch"), validation=validation.with_format("torch"))


class EpochSampler:
    """Deterministic order: epoch e is a permutation seeded by (seed, e); rank r reads every world-th batch.

    The position in the data is just the number of global batches consumed, so a resumed run reads exactly
    what an uninterrupted one would.
    """

    def __init__(self, num_rows: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise UserError(f"the batch size {global_batch} must divide among {world_size} processes")
        self.num_rows, self.global_batch, self.seed = num_rows, global_batch, seed
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = num_rows // global_batch
        if self.batches_per_epoch == 0:
            raise UserError(f"the corpus has {num_rows} sequences, fewer than one batch of {global_batch}; "
                            f"lower --batch-size or add text")

    def indices(self, position: int) -> tuple[int, list[int]]:
        """(epoch, this rank's row indices) of global batch number `position`."""
        epoch, k = divmod(position, self.batches_per_epoch)
        order = torch.randperm(self.num_rows, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        batch = order[k * self.global_batch: (k + 1) * self.global_batch]
        return epoch, batch[self.rank:: self.world_size].tolist()
