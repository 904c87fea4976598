"""The teacher: a frozen Hugging Face encoder of a supported family; its hidden states at block boundaries.

Block-wise distillation needs only hidden states, so the MLM head is optional. The search space is
derived from the teacher: its L layers split into N blocks of L/N teacher layers, each student block has
2*L/N layers (one teacher layer ~ an MHA layer + an FFN layer), projections map to its hidden size.
The hidden state entering block 1 (Y_0) is the one entering the teacher's layer 1, after any embedding projection.

Where weights are copied from the teacher (ETD, inheritance, refinement's attention relations and MLM head), its
parts are read through an adaptor, one per `config.model_type` in `TEACHER_FAMILIES`
(`nasbert/common/teacher_adaptors.py`, as TextBrewer's adaptors): a layer's query/key/value/attention output/FFN
in/out/norms (`Teacher.layer(t)`), the embeddings (`Teacher.embedding_parts`), the MLM head
(`Teacher.mlm_head_parts()`) and the conventions a student must share (`Teacher.conventions`: sizes, position
ids, token types, activation, layer-norm eps). A model_type without an adaptor is refused where the teacher is
loaded, with one sentence naming the supported families.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from nasbert.common import remote_code
from nasbert.common.teacher_adaptors import (
    TEACHER_FAMILIES,
    TeacherConventions,
    TeacherEmbeddings,
    TeacherFamily,
    TeacherLayer,
    TeacherMLMHead,
)
from nasbert.errors import UserError
from search_space import SearchSpace

__all__ = ["TEACHER_FAMILIES", "Teacher", "TeacherConventions", "TeacherEmbeddings", "TeacherFamily",
           "TeacherLayer", "TeacherMLMHead", "default_num_blocks", "load_teacher", "teacher_family", "teacher_space"]

NASBERT_WIDTHS = (128, 192, 256, 384, 512)


def teacher_family(model_type: str, where: str = "the teacher") -> TeacherFamily:
    """The adaptor of `model_type`; a UserError names the supported families."""
    if model_type not in TEACHER_FAMILIES:
        raise UserError(f"{where} is a {model_type!r} model, which nasbert cannot read; supported teacher "
                        f"families (config.model_type) are {', '.join(TEACHER_FAMILIES)}")
    return TEACHER_FAMILIES[model_type]


def _conventions(family: TeacherFamily, config, where: str) -> TeacherConventions:
    """The family's conventions of `config`; a config the adaptor cannot read is a UserError."""
    reason = family.unsupported(config)
    if reason is None:
        try:
            conventions = family.conventions(config)
        except AttributeError as error:
            reason = f"a config without {error.name!r}"
    if reason is None and not isinstance(conventions.hidden_act, str):
        reason = f"a model whose activation is not named ({conventions.hidden_act!r})"
    if reason is not None:
        raise UserError(f"{where} is {reason}, which the {family.label} adaptor cannot read")
    return conventions


# ---- the teacher ----------------------------------------------------------------------------------------------


@dataclass
class Teacher:
    """A frozen encoder and its tokenizer; `boundaries` are hidden-state indices at block edges."""

    model: nn.Module
    tokenizer: object
    num_blocks: int
    name: str
    mlm_head: nn.Module | None = None  # the MLM head (last hidden state -> logits), when the checkpoint has one

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
    def family(self) -> TeacherFamily:
        return teacher_family(getattr(self.config, "model_type", None), f"the teacher {self.name}")

    @property
    def conventions(self) -> TeacherConventions:
        """Sizes, position ids, token types, activation and eps, under one set of names for every family."""
        return _conventions(self.family, self.config, f"the teacher {self.name}")

    def student_conventions(self) -> dict[str, object]:
        """The student config keys (NasbertConfig) that make a student compute as this teacher does, beyond the
        sizes its search space holds: activation, layer-norm eps, position numbering."""
        conventions = self.conventions
        return {"hidden_act": conventions.hidden_act, "layer_norm_eps": conventions.layer_norm_eps,
                "position_padding_idx": conventions.position_padding_idx}

    @property
    def embeddings(self) -> nn.Module:
        """The embeddings module: input_ids -> hidden_states[0], or, where the family factorises its embeddings
        (`embedding_parts.projection`), the E-wide input of that projection."""
        return self.model.embeddings

    @property
    def encoder_layers(self) -> Sequence[nn.Module]:
        """The module each depth applies (ALBERT: the one shared layer, L times)."""
        return self.family.encoder_layers(self.model)

    def layer(self, t: int) -> TeacherLayer:
        """The parts of encoder layer t (0-based; negative counts from the end)."""
        return self.family.layer(self.encoder_layers[t])

    @property
    def embedding_parts(self) -> TeacherEmbeddings:
        return self.family.embeddings(self.model)

    def mlm_head_parts(self, head: nn.Module | None = None) -> TeacherMLMHead | None:
        """The parts of an MLM head of this family (default: the teacher's own), or None without one."""
        head = head if head is not None else self.mlm_head
        if head is None or self.family.mlm_head_parts is None:
            return None
        return self.family.mlm_head_parts(head)

    @torch.no_grad()
    def block_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The N+1 hidden states (B, T, H) at block boundaries: Y_0 (embeddings) .. Y_N."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return [out.hidden_states[i] for i in self.boundaries]


def default_num_blocks(num_layers: int, preferred: int = 4) -> int:
    """NAS-BERT's 4 blocks where they divide the layers, else the largest divisor below it (6 layers -> 3)."""
    return max(d for d in range(1, preferred + 1) if num_layers % d == 0)


def load_teacher(name_or_path: str, num_blocks: int | None = None, device: str | torch.device = "cpu",
                 with_mlm_head: bool = False, trust_remote_code: bool = False) -> Teacher:
    """Load a frozen teacher (local folder or hub name); a folder without a model is a UserError.

    With `with_mlm_head`, the family's MLM head is loaded too where the checkpoint holds a trained one (else None).
    A teacher whose config names Python files of its own (auto_map) is refused unless `trust_remote_code`
    (`nasbert.common.remote_code`).
    """
    path = Path(name_or_path)
    if not path.exists() and _is_path(str(name_or_path)):
        raise UserError(f"teacher folder {name_or_path} does not exist; pass a model folder or a hub name")
    if path.exists() and not (path / "config.json").exists():
        raise UserError(f"{name_or_path} holds no Hugging Face model (no config.json); pass a model folder")
    try:
        trust = remote_code.trust_remote_code(name_or_path, trust_remote_code, "the teacher")
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - a folder or download that does not load is the user's to fix
        raise _load_error(name_or_path, error) from None
    family = teacher_family(getattr(config, "model_type", None), f"the teacher at {name_or_path}")
    _conventions(family, config, f"the teacher at {name_or_path}")
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
        if with_mlm_head and family.mlm_head is not None:
            mlm_model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True,
                                                                   trust_remote_code=trust)
            if not any(key.startswith(family.mlm_head_prefixes) for key in info["missing_keys"]):
                model = mlm_model.base_model
                mlm_head = family.mlm_head(mlm_model).to(device).eval().requires_grad_(False)
        if model is None:
            model = AutoModel.from_pretrained(name_or_path, trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust)
    except Exception as error:  # noqa: BLE001 - truncated weights, a broken tokenizer: the user's files
        raise _load_error(name_or_path, error) from None
    finally:
        transformers_logging.set_verbosity(verbosity)
    try:
        family.encoder_layers(model), family.embeddings(model)
    except AttributeError:
        raise UserError(f"the teacher at {name_or_path} is a {type(model).__name__}, not the encoder its "
                        f"model_type {config.model_type!r} promises") from None
    model.to(device).eval().requires_grad_(False)
    return Teacher(model=model, tokenizer=tokenizer, num_blocks=num_blocks, name=str(name_or_path), mlm_head=mlm_head)


def check_seq_len(teacher: Teacher, seq_len: int, flag: str = "--seq-len") -> None:
    """Refuse sequences longer than the teacher has positions for (before a run folder is made, not mid-step)."""
    conventions = teacher.conventions
    offset = 0 if conventions.position_padding_idx is None else conventions.position_padding_idx + 1
    positions = conventions.max_position_embeddings - offset
    if seq_len > positions:
        raise UserError(f"{flag} {seq_len} is longer than the {positions} positions of the teacher {teacher.name}; "
                        f"use {flag} {positions} or less")


def _is_path(name: str) -> bool:
    """A name that can only be a local path, never a hub model id ("org/name")."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def _load_error(name_or_path: str, error: Exception) -> UserError:
    """One sentence for a teacher that does not load: a broken file of a local folder, or a failed download."""
    message = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    path = Path(name_or_path)
    if not path.exists():
        return UserError(f"the teacher {name_or_path} is not a local folder and could not be downloaded from the "
                         f"Hugging Face hub ({message}); pass a local model folder")
    files = [path / name for name in ("config.json", "tokenizer_config.json")]
    broken = next((f.name for f in files if f.is_file() and not _json_ok(f)), None)
    if broken is not None:
        return UserError(f"cannot load a teacher from {name_or_path}: its {broken} is not valid JSON")
    if "safetensor" in type(error).__name__.lower() or "safetensor" in message.lower():
        return UserError(f"cannot load a teacher from {name_or_path}: its weights file is damaged or truncated "
                         f"({message})")
    return UserError(f"cannot load a teacher from {name_or_path}: {message}")


def _json_ok(file: Path) -> bool:
    try:
        json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def teacher_space(teacher: Teacher, widths: tuple[int, ...] | None = None, **overrides) -> SearchSpace:
    """The NAS-BERT space for this teacher: its hidden size, vocab, positions, token types, head size and, where it
    factorises its embeddings, their size E."""
    conventions = teacher.conventions
    hidden = conventions.hidden_size
    head_dim = conventions.head_dim
    if widths is None:
        widths = tuple(w for w in NASBERT_WIDTHS if w <= hidden and w % head_dim == 0) or (hidden,)
    values = dict(num_blocks=teacher.num_blocks, layers_per_block=2 * teacher.layers_per_block, widths=tuple(widths),
                  head_dim=head_dim, hidden_size=hidden, vocab_size=teacher.config.vocab_size,
                  max_position_embeddings=conventions.max_position_embeddings,
                  type_vocab_size=conventions.type_vocab_size)
    if conventions.embedding_size != hidden:
        values["embedding_size"] = conventions.embedding_size
    values.update(overrides)
    try:
        return SearchSpace(**values)
    except ValueError as error:
        raise UserError(f"the search space does not fit the teacher: {error}") from None
