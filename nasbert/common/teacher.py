"""The teacher: any BERT-like Hugging Face encoder, frozen; its hidden states at block boundaries.

Block-wise distillation needs only hidden states, so the MLM head is optional. The search space is
derived from the teacher: its L layers split into N blocks of L/N teacher layers, each student block has
2*L/N layers (one teacher layer ~ an MHA layer + an FFN layer), projections map to its hidden size.

Where weights are copied from the teacher (ETD, refinement's attention relations), its parts are read
through an adaptor, one per `config.model_type` in `TEACHER_FAMILIES` (as TextBrewer's adaptors): a
layer's query/key/value/attention output/FFN in/out/norms (`Teacher.layer(t)`), the embeddings
(`Teacher.embedding_parts`) and the MLM head (`Teacher.mlm_head_parts()`). Nothing outside this file spells a
family's module paths; a new family is one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from nasbert.errors import UserError
from search_space import SearchSpace

NASBERT_WIDTHS = (128, 192, 256, 384, 512)


# ---- the adaptor: a family's parts under one set of names ------------------------------------------------


@dataclass(frozen=True)
class TeacherLayer:
    """One post-LN encoder layer: x = attn_norm(x + attn_out(attention(query, key, value))),
    then x = ffn_norm(x + ffn_out(act(ffn_in(x))))."""

    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    attn_out: nn.Linear  # its input is the heads' outputs, concatenated (B, T, H)
    attn_norm: nn.LayerNorm
    ffn_in: nn.Linear
    ffn_out: nn.Linear
    ffn_norm: nn.LayerNorm


@dataclass(frozen=True)
class TeacherEmbeddings:
    """word + position (+ token type) embeddings, then `norm`; position p is row `position_offset + p`."""

    word: nn.Embedding
    position: nn.Embedding
    token_type: nn.Embedding | None  # None: the family has no token types
    norm: nn.LayerNorm
    position_offset: int = 0


@dataclass(frozen=True)
class TeacherMLMHead:
    """The MLM head's transform (dense, activation, norm) and the decoder's bias (its weight is the embeddings')."""

    dense: nn.Linear
    norm: nn.LayerNorm
    decoder_bias: torch.Tensor


@dataclass(frozen=True)
class TeacherFamily:
    """How one `config.model_type` names its parts; functions of the base model, a layer, or the MLM head."""

    encoder_layers: Callable[[nn.Module], nn.ModuleList]
    layer: Callable[[nn.Module], TeacherLayer]
    embeddings: Callable[[nn.Module], TeacherEmbeddings]
    mlm_head_path: str | None = None  # where an AutoModelForMaskedLM keeps its head, e.g. "cls.predictions"
    mlm_head: Callable[[nn.Module], TeacherMLMHead] | None = None


def _bert_layer(layer: nn.Module) -> TeacherLayer:
    attention = layer.attention
    return TeacherLayer(query=attention.self.query, key=attention.self.key, value=attention.self.value,
                        attn_out=attention.output.dense, attn_norm=attention.output.LayerNorm,
                        ffn_in=layer.intermediate.dense, ffn_out=layer.output.dense, ffn_norm=layer.output.LayerNorm)


def _bert_embeddings(model: nn.Module) -> TeacherEmbeddings:
    e = model.embeddings
    return TeacherEmbeddings(word=e.word_embeddings, position=e.position_embeddings,
                             token_type=e.token_type_embeddings, norm=e.LayerNorm)


def _bert_mlm_head(head: nn.Module) -> TeacherMLMHead:
    bias = head.bias if getattr(head, "bias", None) is not None else head.decoder.bias
    return TeacherMLMHead(dense=head.transform.dense, norm=head.transform.LayerNorm, decoder_bias=bias)


BERT = TeacherFamily(encoder_layers=lambda model: model.encoder.layer, layer=_bert_layer,
                     embeddings=_bert_embeddings, mlm_head_path="cls.predictions", mlm_head=_bert_mlm_head)

# config.model_type -> adaptor. sentence-transformers' all-MiniLM-L6-v2 is a BertModel.
TEACHER_FAMILIES: dict[str, TeacherFamily] = {"bert": BERT}


def teacher_family(model_type: str, where: str = "the teacher") -> TeacherFamily:
    """The adaptor of `model_type`; a UserError names the supported families."""
    if model_type not in TEACHER_FAMILIES:
        raise UserError(f"{where} is a {model_type!r} model, which nasbert cannot read; supported teacher "
                        f"families (config.model_type) are {', '.join(TEACHER_FAMILIES)}")
    return TEACHER_FAMILIES[model_type]


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
    def embeddings(self) -> nn.Module:
        """The embeddings module: input_ids -> hidden_states[0]."""
        return self.model.embeddings

    @property
    def encoder_layers(self) -> nn.ModuleList:
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
        if head is None or self.family.mlm_head is None:
            return None
        return self.family.mlm_head(head)

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
    family = teacher_family(getattr(config, "model_type", None), f"the teacher at {name_or_path}")
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
        if with_mlm_head and family.mlm_head_path is not None:
            mlm_model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
            head = _submodule(mlm_model, family.mlm_head_path)
            prefix = family.mlm_head_path.split(".")[0] + "."
            if head is not None and not any(key.startswith(prefix) for key in info["missing_keys"]):
                model, mlm_head = mlm_model.base_model, head.to(device).eval().requires_grad_(False)
        if model is None:
            model = AutoModel.from_pretrained(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load a teacher from {name_or_path}: {str(error).splitlines()[0]}") from None
    finally:
        transformers_logging.set_verbosity(verbosity)
    try:
        family.encoder_layers(model), family.embeddings(model)
    except AttributeError:
        raise UserError(f"the teacher at {name_or_path} is a {type(model).__name__}, not the encoder its "
                        f"model_type {config.model_type!r} promises") from None
    model.to(device).eval().requires_grad_(False)
    return Teacher(model=model, tokenizer=tokenizer, num_blocks=num_blocks, name=str(name_or_path), mlm_head=mlm_head)


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    """model.a.b for path 'a.b', or None where a part is missing."""
    for name in path.split("."):
        model = getattr(model, name, None)
    return model


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
