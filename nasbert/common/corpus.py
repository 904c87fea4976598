"""The corpus options, declared once: train-supernet (TrainConfig) and export's refinement (RefineConfig) inherit
these fields, so they stay top-level keys of a run's config.json, and both build their corpus by keyword from
`corpus_spec()`. Light on purpose (no torch, no datasets): the command line reads it to build `--help`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class CorpusOptions:
    """corpus options (the same for train-supernet and export's refinement)"""

    train_files: list[str] = field(default_factory=list, metadata={
        "flag": "train-file", "metavar": "FILE",
        "help": "training corpus: .txt (one text per line), .jsonl/.json or .csv/.tsv (text in the text column), "
                "several files, or a hub dataset name"})
    validation_files: list[str] | None = field(default=None, metadata={
        "flag": "validation-file", "metavar": "FILE",
        "help": "dev corpus, same formats (default: the validation fraction of the training corpus, held out)"})
    validation_fraction: float = field(default=0.05, metadata={
        "help": "share of the training corpus held out as dev data when no validation file is given"})
    text_column: str = field(default="text", metadata={"help": "the text column of .jsonl/.json/.csv/.tsv files"})
    seq_len: int = field(default=128, metadata={"help": "tokens per packed sequence, [CLS] and [SEP] included"})
    max_train_sequences: int | None = field(default=None, metadata={
        "help": "use at most this many training sequences (quick runs; default: all)"})
    max_validation_sequences: int | None = field(default=256, metadata={
        "help": "use at most this many dev sequences"})

    def corpus_spec(self) -> CorpusOptions:
        """Just the corpus fields, by keyword: what `nasbert.common.data.build_corpus` reads."""
        return CorpusOptions(**{f.name: getattr(self, f.name) for f in fields(CorpusOptions)})
