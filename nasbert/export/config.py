"""Stage 4's refinement options: RefineConfig and the refinement losses it may name."""

from __future__ import annotations

from dataclasses import dataclass, field

from nasbert.common.losses import REFINE_LOSSES
from nasbert.errors import UserError

LOSSES = tuple(REFINE_LOSSES)  # the built-in refinement losses (the default); validation reads the live registry


@dataclass
class RefineConfig:
    train_files: list[str] = field(default_factory=list)
    output: str = ""  # work folder: checkpoints, tensorboard, metrics
    steps: int = 1000
    batch_size: int = 32
    seq_len: int = 128
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_grad_norm: float = 1.0
    losses: list[str] = field(default_factory=lambda: list(LOSSES))
    kl_lambda: float = 0.5
    temperature: float = 1.0
    relation_heads: int | None = None
    mlm_probability: float = 0.15
    whole_word_mask: bool = False
    validation_files: list[str] | None = None
    validation_fraction: float = 0.05
    text_column: str = "text"
    max_train_sequences: int | None = None
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0
    device: str = "auto"
    resume: bool = False

    def __post_init__(self) -> None:
        unknown = [loss for loss in self.losses if loss not in REFINE_LOSSES]
        if unknown or not self.losses:
            raise UserError(f"--losses takes some of {', '.join(REFINE_LOSSES)}, not {', '.join(unknown) or 'nothing'}")
        if self.steps <= 0:
            raise UserError("--refine-steps must be positive")
