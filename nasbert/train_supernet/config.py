"""Stage 1's options: TrainConfig (everything needed to rebuild a run, stored as the run's config.json).

Light (no torch): the command line imports it to build `--help`; each field's help is the flag's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nasbert.common.corpus import CorpusOptions
from nasbert.errors import UserError

INITS = ("random", "etd-impt", "etd-rand")
# Fields a resumed run may change; anything else must match the run's config.json.
RESUMABLE_CHANGES = {"max_steps", "epochs", "eval_every", "save_every", "keep_checkpoints", "log_every", "resume",
                     "device", "trust_remote_code"}
# Numbers that must be finite and > 0, or finite and >= 0 (a NaN or negative learning rate ends in one sentence).
POSITIVE = ("batch_size", "grad_accum", "seq_len", "eval_every", "save_every", "eval_batches", "lr", "epochs",
            "importance_batches", "keep_checkpoints", "log_every", "shrink_bins", "shrink_candidates", "shrink_keep",
            "shrink_every", "shrink_dev_batches", "candidates_per_block", "max_steps")
NON_NEGATIVE = ("weight_decay", "warmup_steps", "max_grad_norm", "eval_paths", "shrink_warmup_steps",
                "max_train_sequences", "max_validation_sequences")


@dataclass
class TrainConfig(CorpusOptions):
    """Every train-supernet option; `nasbert train-supernet` makes one flag of each field (its help is here)."""

    teacher: str = field(default="", metadata={
        "help": "teacher model folder or hub name (any BERT-like encoder; an MLM head is not needed)"})
    output: str = field(default="", metadata={"help": "the run folder (config, checkpoints, tensorboard, metrics)"})
    num_blocks: int | None = field(default=None, metadata={
        "help": "student blocks; must divide the teacher's layers (default 4, or the largest divisor below)"})
    widths: list[int] | None = field(default=None, metadata={
        "help": "block widths of the space (default NAS-BERT's 128..512, those up to the teacher's hidden size)"})
    init: str = field(default="random", metadata={
        "choices": INITS, "help": "supernet initialisation: random, etd-impt (teacher weights by importance) or "
                                  "etd-rand (teacher weights in a random order)"})
    importance_batches: int = field(default=4, metadata={
        "help": "batches of 8 sequences that score the teacher's heads and neurons for --init etd-impt"})
    batch_size: int = field(default=32, metadata={
        "help": "sequences per optimizer step, over all processes and accumulation steps"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps per optimizer step"})
    lr: float = field(default=5e-4, metadata={"help": "peak learning rate (AdamW, warm-up then linear decay)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=100, metadata={"help": "steps of linear learning-rate warm-up"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip the gradient norm to this (0: no clipping)"})
    max_steps: int | None = field(default=None, metadata={
        "help": "optimizer steps (default: --epochs over the corpus)"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the corpus when --max-steps is not given"})
    mlm_probability: float = field(default=0.0, metadata={
        "help": "mask this share of the teacher's input tokens (0 = no masking; BERT uses 0.15)"})
    whole_word_mask: bool = field(default=False, metadata={"help": "mask whole words rather than single tokens"})
    # Share of steps in which block n >= 1 is fed the student's own (detached) block n-1 output on the same path
    # instead of the teacher's Y_{n-1}: blocks learn to take a student's upstream error, as they do when chained.
    # 0 is NAS-BERT (blocks trained on teacher inputs only).
    chained_inputs: float = field(default=0.0, metadata={
        "help": "share of steps whose blocks take the student's own upstream output instead of the teacher's "
                "(0 = NAS-BERT; makes the sum of block losses track chained students better)"})
    eval_every: int = field(default=200, metadata={"help": "dev block losses every this many steps"})
    eval_batches: int = field(default=4, metadata={"help": "dev batches per evaluation"})
    eval_paths: int = field(default=4, metadata={
        "help": "seeded random paths evaluated besides the teacher-shaped one"})
    save_every: int = field(default=500, metadata={"help": "checkpoint every this many steps"})
    keep_checkpoints: int = field(default=3, metadata={"help": "newest checkpoints kept (older ones are deleted)"})
    log_every: int = field(default=10, metadata={"help": "training scalars every this many steps"})
    seed: int = field(default=0, metadata={"help": "seed of the weights, data order, paths and masking"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    resume: bool = field(default=False, metadata={
        "help": "continue the run in --output from its newest complete checkpoint"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "let a --teacher whose config names Python files of its own (auto_map) run that code"})
    # progressive shrinking (NAS-BERT's defaults for bins, candidates and keep)
    shrink: bool = field(default=False, metadata={
        "help": "NAS-BERT's progressive shrinking: drop the worse half of each block's candidates per size bin"})
    shrink_bins: int = field(default=10, metadata={"help": "size bins per block (B)"})
    shrink_candidates: int = field(default=2000, metadata={"help": "candidates scored per bin at a shrink point (E)"})
    shrink_keep: int = field(default=10, metadata={"help": "candidates per bin where shrinking stops (m)"})
    shrink_warmup_steps: int = field(default=1000, metadata={"help": "training steps before the first shrink point"})
    shrink_every: int = field(default=1000, metadata={"help": "steps between shrink points"})
    shrink_dev_batches: int = field(default=5, metadata={"help": "dev batches that score the candidates"})
    latency_table: str | None = field(default=None, metadata={
        "help": "latency table that sorts candidates into bins (default: FLOPs as a proxy)"})
    candidates_per_block: int = field(default=100, metadata={
        "help": "without --shrink: seeded candidates per block scored into block_losses.json"})

    def __post_init__(self) -> None:
        # Local paths are stored absolute, so search and export find them from any working directory.
        self.teacher = absolute_if_local(self.teacher)
        self.train_files = [absolute_if_local(f) for f in self.train_files]
        if self.validation_files:
            self.validation_files = [absolute_if_local(f) for f in self.validation_files]
        if self.latency_table:
            self.latency_table = absolute_if_local(self.latency_table)
        if self.init not in INITS:
            raise UserError(f"--init must be one of {', '.join(INITS)}, not {self.init!r}")
        check_numbers(self, POSITIVE, NON_NEGATIVE)
        if not 0 <= self.mlm_probability < 1:
            raise UserError(f"--mlm-probability is a share of tokens in [0, 1), got {self.mlm_probability}")
        if not self.validation_files and not 0 < self.validation_fraction < 1:
            raise UserError(f"--validation-fraction is a share in (0, 1), got {self.validation_fraction}")
        if not 0 <= self.chained_inputs <= 1:
            raise UserError(f"--chained-inputs is a share of steps between 0 and 1, got {self.chained_inputs}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown training option {unknown[0]!r} in the config")
        return cls(**values)


def check_numbers(config: Any, positive: tuple[str, ...], non_negative: tuple[str, ...] = (), prefix: str = "") -> None:
    """Refuse (one sentence naming the flag: its metadata's, else `prefix` + name) a field of the dataclass
    `config` that is NaN, infinite, or not > 0 (`positive`) / >= 0 (`non_negative`); None passes."""
    flags = {f.name: f.metadata.get("flag", prefix + f.name.replace("_", "-")) for f in fields(config)}
    for names, least in ((positive, "positive"), (non_negative, "0 or more")):
        for name in names:
            value = getattr(config, name)
            if value is None:
                continue
            if not math.isfinite(value) or not (value > 0 if least == "positive" else value >= 0):
                raise UserError(f"--{flags[name]} must be a finite number, {least}, got {value}")


def absolute_if_local(path: str) -> str:
    """An existing local path made absolute; anything else (a hub name) as given."""
    return str(Path(path).resolve()) if path and Path(path).exists() else path
