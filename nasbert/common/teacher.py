"""The teacher: any BERT-like Hugging Face encoder, frozen; its hidden states at block boundaries.

Block-wise distillation needs only hidden states, so the MLM head is optional. The search space is
derived from the teacher: its L layers split into N blocks of L/N teacher layers, each student block has
2*L/N layers (one teacher layer ~ an MHA layer + an FFN layer), projections map to its hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from nasbert.errors import UserError
from search_space import SearchSpace

NASBERT_WIDTHS = (128, 192, 256, 384, 512)


@dataclass
class Teacher:
    """A frozen encoder and its tokenizer; `boundaries` are hidden-state indices at block edges."""

    model: nn.Module
    tokenizer: object
    num_blocks: int
    name: str
    mlm_head: nn.Module | None = None  # BERT's `cls.predictions`, when the checkpoint has one

    @property
    def config(self):
        return self.model.config

    @property
    def layers_per_block(self) -> int:
        return self.config.num_hidden_layers // self.num_blocks

    @property
    def boundaries(self) -> list[int]:
        """Indices into `hidden_states` (0 = embedding output): block n reads boundaries[n], predicts n+1."""
        return [n * self.layers_per_block for n in range(self.num_blocks + 1)]

    @property
    def embeddings(self) -> nn.Module:
        return self.model.embeddings

    @property
    def encoder_layers(self) -> nn.ModuleList:
        return self.model.encoder.layer

    @torch.no_grad()
    def block_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The N+1 hidden states (B, T, H) at block boundaries: Y_0 (embeddings) .. Y_N."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return [out.hidden_states[i] for i in self.boundaries]


def default_num_blocks(num_layers: int, preferred: int = 4) -> int:
    """NAS-BERT's 4 blocks where they divide the layers, else the largest divisor below it (6 layers -> 3)."""
    return max(d for d in range(1, preferred + 1) if num_layers % d == 0)


def load_teacher(name_or_path: str, num_blocks: int | None = None, device: str | torch.device = "cpu",
                 with_mlm_head: bool = False) -> Teacher:
    """Load a frozen teacher (local folder or hub name); a folder without a model is a UserError.

    With `with_mlm_head`, a BERT-style MLM head is loaded too where the checkpoint holds one (else None).
    """
    path = Path(name_or_path)
    if path.exists() and not (path / "config.json").exists():
        raise UserError(f"{name_or_path} holds no Hugging Face model (no config.json); pass a model folder")
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load a teacher from {name_or_path}: {str(error).splitlines()[0]}") from None
    for attribute in ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"):
        if not hasattr(config, attribute):
            raise UserError(f"the teacher at {name_or_path} is not a BERT-like encoder (no {attribute})")
    layers = config.num_hidden_layers
    if num_blocks is None:
        num_blocks = default_num_blocks(layers)
    if num_blocks <= 0 or layers % num_blocks:
        divisors = [d for d in range(1, layers + 1) if layers % d == 0]
        raise UserError(f"the teacher's {layers} layers do not divide into {num_blocks} blocks; "
                        f"choose --num-blocks from {divisors}")
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # an MLM head left unused is expected, not worth a report
    mlm_head = None
    try:
        model = None
        if with_mlm_head:
            mlm_model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
            head = getattr(getattr(mlm_model, "cls", None), "predictions", None)
            if head is not None and not any(key.startswith("cls.") for key in info["missing_keys"]):
                model, mlm_head = mlm_model.base_model, head.to(device).eval().requires_grad_(False)
        if model is None:
            model = AutoModel.from_pretrained(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load a teacher from {name_or_path}: {str(error).splitlines()[0]}") from None
    finally:
        transformers_logging.set_verbosity(verbosity)
    if not hasattr(model, "embeddings") or not hasattr(getattr(model, "encoder", None), "layer"):
        raise UserError(f"the teacher at {name_or_path} is a {type(model).__name__}, not a BERT-like encoder "
                        f"(embeddings + encoder.layer)")
    model.to(device).eval().requires_grad_(False)
    return Teacher(model=model, tokenizer=tokenizer, num_blocks=num_blocks, name=str(name_or_path), mlm_head=mlm_head)


def teacher_space(teacher: Teacher, widths: tuple[int, ...] | None = None, **overrides) -> SearchSpace:
    """The NAS-BERT space for this teacher: its hidden size, vocab, positions and head size."""
    config = teacher.config
    hidden = config.hidden_size
    head_dim = hidden // config.num_attention_heads
    if widths is None:
        widths = tuple(w for w in NASBERT_WIDTHS if w <= hidden and w % head_dim == 0) or (hidden,)
    values = dict(num_blocks=teacher.num_blocks, layers_per_block=2 * teacher.layers_per_block, widths=tuple(widths),
                  head_dim=head_dim, hidden_size=hidden, vocab_size=config.vocab_size,
                  max_position_embeddings=config.max_position_embeddings,
                  type_vocab_size=getattr(config, "type_vocab_size", 2))
    values.update(overrides)
    try:
        return SearchSpace(**values)
    except ValueError as error:
        raise UserError(f"the search space does not fit the teacher: {error}") from None
