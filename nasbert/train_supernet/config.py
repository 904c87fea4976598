"""Stage 1's options: TrainConfig (everything needed to rebuild a run, stored as the run's config.json)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from nasbert.errors import UserError

INITS = ("random", "etd-impt", "etd-rand")
# Fields a resumed run may change; anything else must match the run's config.json.
RESUMABLE_CHANGES = {"max_steps", "epochs", "eval_every", "save_every", "keep_checkpoints", "log_every", "resume",
                     "device"}


@dataclass
class TrainConfig:
    teacher: str = ""
    train_files: list[str] = field(default_factory=list)
    output: str = ""
    validation_files: list[str] | None = None
    validation_fraction: float = 0.05
    text_column: str = "text"
    seq_len: int = 128
    max_train_sequences: int | None = None
    max_validation_sequences: int | None = 256
    num_blocks: int | None = None
    widths: list[int] | None = None
    init: str = "random"
    importance_batches: int = 4
    batch_size: int = 32  # sequences per optimizer step, over all processes and accumulation steps
    grad_accum: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_grad_norm: float = 1.0
    max_steps: int | None = None
    epochs: float = 1.0
    mlm_probability: float = 0.0
    whole_word_mask: bool = False
    # Share of steps in which block n >= 1 is fed the student's own (detached) block n-1 output on the same path
    # instead of the teacher's Y_{n-1}: blocks learn to take a student's upstream error, as they do when chained.
    # 0 is NAS-BERT (blocks trained on teacher inputs only).
    chained_inputs: float = 0.0
    eval_every: int = 200
    eval_batches: int = 4
    eval_paths: int = 4
    save_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    # progressive shrinking (NAS-BERT's defaults for bins, candidates and keep)
    shrink: bool = False
    shrink_bins: int = 10
    shrink_candidates: int = 2000
    shrink_keep: int = 10
    shrink_warmup_steps: int = 1000
    shrink_every: int = 1000
    shrink_dev_batches: int = 5
    latency_table: str | None = None
    candidates_per_block: int = 100  # block-loss table size without shrinking

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
        for name in ("batch_size", "grad_accum", "seq_len", "eval_every", "save_every", "eval_batches"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 <= self.chained_inputs <= 1:
            raise UserError(f"--chained-inputs is a share of steps between 0 and 1, got {self.chained_inputs}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown training option {unknown[0]!r} in the config")
        return cls(**values)


def absolute_if_local(path: str) -> str:
    """An existing local path made absolute; anything else (a hub name) as given."""
    return str(Path(path).resolve()) if path and Path(path).exists() else path
