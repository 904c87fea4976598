"""Teacher adaptors: one per encoder family (`config.model_type`), naming its parts under one set of names.

Every supported family is a post-LN encoder whose layer is `x = attn_norm(x + attn_out(heads(q, k, v)))`, then
`x = ffn_norm(x + ffn_out(act(ffn_in(x))))`; they differ in module paths and in their embeddings:

    family       token types   position ids (pads)   embeddings entering layer 1              not copied by a student
    bert         yes           0, 1, ..              word + position + type, norm             -
    roberta      1 row         p+1, p+2, .. (p)      word + position + type, norm             -
    xlm-roberta  1 row         p+1, p+2, .. (p)      word + position + type, norm             -
    distilbert   none          0, 1, ..              word + position, norm                    -
    electra      yes           0, 1, ..              E-wide, then embeddings_project if E!=H  -
    albert       yes           0, 1, ..              E-wide, then embedding_hidden_mapping_in -  (one shared layer)
    mpnet        none          2, 3, .. (1)          word + position, norm                    relative-position bias

(p: the padding index, RoBERTa's pad_token_id; E: the factorised embedding size; H: the hidden size.)

The student (`nasbert/modeling_nasbert.py`) follows the family's conventions (`TeacherConventions`: position ids,
token types, activation, layer-norm eps, E); ETD at the teacher's width and depth then reproduces the teacher's
hidden states for every family but MPNet, whose relative-position bias the student has no place for: it
inherits every other weight and learns to do without the bias during refinement (`TeacherFamily.not_inherited`).
ALBERT's shared layer is copied into every student layer, so the student computes the teacher's function with
L copies of its one layer (exact, at L times the layer's parameters).

A new family is one `TeacherFamily` entry in `TEACHER_FAMILIES`; nothing else spells a family's module paths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers.activations import ACT2FN

# ---- the parts, under one set of names --------------------------------------------------------------------


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
    """word + position (+ token type) embeddings of size E, then `norm`, then `projection` (E -> H) where the
    family factorises its embeddings (ELECTRA, ALBERT): the hidden state entering layer 1 is after it.

    Position ids: 0, 1, .. (BERT), or, with `position_padding_idx` p (RoBERTa, XLM-R, MPNet), p+1, p+2, .. for
    the tokens that are not padding and p for padding (fairseq's make_positions)."""

    word: nn.Embedding
    position: nn.Embedding
    token_type: nn.Embedding | None  # None: the family has no token types
    norm: nn.LayerNorm
    projection: nn.Linear | None = None
    position_padding_idx: int | None = None

    @property
    def position_offset(self) -> int:
        """The row of the first token's position."""
        return 0 if self.position_padding_idx is None else self.position_padding_idx + 1


@dataclass(frozen=True)
class TeacherMLMHead:
    """The MLM head's transform (dense, activation, norm) and the decoder's bias (its weight is the embeddings')."""

    dense: nn.Linear
    norm: nn.LayerNorm
    decoder_bias: torch.Tensor


@dataclass(frozen=True)
class TeacherConventions:
    """What a student must share with the teacher to compute what it computes, read from the teacher's config."""

    hidden_size: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int  # 0: no token types
    embedding_size: int  # E of the word embeddings; the hidden size unless the family factorises them
    hidden_act: str
    layer_norm_eps: float
    position_padding_idx: int | None = None  # see TeacherEmbeddings

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class MLMHead(nn.Module):
    """dense -> activation -> norm -> decoder, over a family's own modules where it keeps them on the model itself
    (DistilBERT, ELECTRA's generator) rather than in one head module."""

    def __init__(self, dense: nn.Linear, activation: str, norm: nn.LayerNorm, decoder: nn.Linear):
        super().__init__()
        self.dense, self.activation, self.norm, self.decoder = dense, ACT2FN[activation], norm, decoder

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.activation(self.dense(hidden))))  # (..., V)


@dataclass(frozen=True)
class TeacherFamily:
    """How one `config.model_type` names its parts: functions of the base model, a layer, the config, the MLM model.

    `mlm_head` maps an AutoModelForMaskedLM of the family to its head (last hidden state -> logits); the head counts
    as trained only when no state-dict key under `mlm_head_prefixes` was missing from the checkpoint."""

    label: str  # the family's name in messages and the README
    encoder_layers: Callable[[nn.Module], Sequence[nn.Module]]
    layer: Callable[[nn.Module], TeacherLayer]
    embeddings: Callable[[nn.Module], TeacherEmbeddings]
    conventions: Callable[[object], TeacherConventions]
    mlm_head: Callable[[nn.Module], nn.Module] | None = None
    mlm_head_prefixes: tuple[str, ...] = ()
    mlm_head_parts: Callable[[nn.Module], TeacherMLMHead] | None = None
    not_inherited: str | None = None  # what a student cannot copy and learns instead, one sentence
    unsupported: Callable[[object], str | None] = lambda config: None  # why this config cannot be read, or None


# ---- conventions from a config ------------------------------------------------------------------------------


def _conventions(config, *, position_padding_idx: int | None = None, type_vocab_size: int | None = None,
                 embedding_size: int | None = None) -> TeacherConventions:
    """BERT's config names (hidden_act, layer_norm_eps, intermediate_size, type_vocab_size)."""
    return TeacherConventions(
        hidden_size=config.hidden_size, num_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size, max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size if type_vocab_size is None else type_vocab_size,
        embedding_size=embedding_size or config.hidden_size, hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps, position_padding_idx=position_padding_idx)


def _distilbert_conventions(config) -> TeacherConventions:
    # DistilBERT's names: dim, n_heads, hidden_dim, activation; its layer norms are built with eps 1e-12.
    return TeacherConventions(
        hidden_size=config.dim, num_heads=config.n_heads, intermediate_size=config.hidden_dim,
        max_position_embeddings=config.max_position_embeddings, type_vocab_size=0, embedding_size=config.dim,
        hidden_act=config.activation, layer_norm_eps=1e-12)


# ---- BERT and the families that name their layers as BERT does (RoBERTa, XLM-R, ELECTRA) --------------------


def _bert_layer(layer: nn.Module) -> TeacherLayer:
    attention = layer.attention
    return TeacherLayer(query=attention.self.query, key=attention.self.key, value=attention.self.value,
                        attn_out=attention.output.dense, attn_norm=attention.output.LayerNorm,
                        ffn_in=layer.intermediate.dense, ffn_out=layer.output.dense, ffn_norm=layer.output.LayerNorm)


def _bert_embeddings(model: nn.Module) -> TeacherEmbeddings:
    e = model.embeddings
    return TeacherEmbeddings(word=e.word_embeddings, position=e.position_embeddings,
                             token_type=e.token_type_embeddings, norm=e.LayerNorm)


def _bias_of(head: nn.Module) -> torch.Tensor:
    return head.bias if getattr(head, "bias", None) is not None else head.decoder.bias


def _bert_mlm_head(head: nn.Module) -> TeacherMLMHead:
    return TeacherMLMHead(dense=head.transform.dense, norm=head.transform.LayerNorm, decoder_bias=_bias_of(head))


BERT = TeacherFamily(label="BERT", encoder_layers=lambda model: model.encoder.layer, layer=_bert_layer,
                     embeddings=_bert_embeddings, conventions=_conventions,
                     mlm_head=lambda mlm: mlm.cls.predictions, mlm_head_prefixes=("cls.",),
                     mlm_head_parts=_bert_mlm_head)


def _roberta_embeddings(model: nn.Module) -> TeacherEmbeddings:
    e = model.embeddings
    return TeacherEmbeddings(word=e.word_embeddings, position=e.position_embeddings,
                             token_type=e.token_type_embeddings, norm=e.LayerNorm, position_padding_idx=e.padding_idx)


def _roberta_mlm_head(head: nn.Module) -> TeacherMLMHead:
    return TeacherMLMHead(dense=head.dense, norm=head.layer_norm, decoder_bias=_bias_of(head))


def _roberta_family(label: str) -> TeacherFamily:
    return TeacherFamily(label=label, encoder_layers=lambda model: model.encoder.layer, layer=_bert_layer,
                         embeddings=_roberta_embeddings,
                         conventions=lambda config: _conventions(config, position_padding_idx=config.pad_token_id),
                         mlm_head=lambda mlm: mlm.lm_head, mlm_head_prefixes=("lm_head.",),
                         mlm_head_parts=_roberta_mlm_head)


ROBERTA = _roberta_family("RoBERTa")
XLM_ROBERTA = _roberta_family("XLM-RoBERTa")


def _electra_embeddings(model: nn.Module) -> TeacherEmbeddings:
    return _factorised(_bert_embeddings(model), getattr(model, "embeddings_project", None))


def _factorised(parts: TeacherEmbeddings, projection: nn.Linear | None) -> TeacherEmbeddings:
    return TeacherEmbeddings(word=parts.word, position=parts.position, token_type=parts.token_type, norm=parts.norm,
                             projection=projection)


def _electra_mlm_head(mlm: nn.Module) -> nn.Module:
    predictions = mlm.generator_predictions  # ELECTRA's generator: dense H -> E, GELU, norm, tied decoder E -> V
    return MLMHead(predictions.dense, "gelu", predictions.LayerNorm, mlm.generator_lm_head)


def _plain_mlm_head(head: nn.Module) -> TeacherMLMHead:
    """The parts of an `MLMHead` or of a head with dense / LayerNorm / decoder (+ bias) of its own (ALBERT)."""
    norm = head.norm if isinstance(head, MLMHead) else head.LayerNorm
    return TeacherMLMHead(dense=head.dense, norm=norm, decoder_bias=_bias_of(head))


ELECTRA = TeacherFamily(label="ELECTRA", encoder_layers=lambda model: model.encoder.layer, layer=_bert_layer,
                        embeddings=_electra_embeddings,
                        conventions=lambda config: _conventions(config, embedding_size=config.embedding_size),
                        mlm_head=_electra_mlm_head, mlm_head_prefixes=("generator_predictions.", "generator_lm_head."),
                        mlm_head_parts=_plain_mlm_head)


# ---- DistilBERT ---------------------------------------------------------------------------------------------


def _distilbert_layer(layer: nn.Module) -> TeacherLayer:
    attention = layer.attention
    return TeacherLayer(query=attention.q_lin, key=attention.k_lin, value=attention.v_lin, attn_out=attention.out_lin,
                        attn_norm=layer.sa_layer_norm, ffn_in=layer.ffn.lin1, ffn_out=layer.ffn.lin2,
                        ffn_norm=layer.output_layer_norm)


def _distilbert_embeddings(model: nn.Module) -> TeacherEmbeddings:
    e = model.embeddings
    return TeacherEmbeddings(word=e.word_embeddings, position=e.position_embeddings, token_type=None, norm=e.LayerNorm)


DISTILBERT = TeacherFamily(
    label="DistilBERT", encoder_layers=lambda model: model.transformer.layer, layer=_distilbert_layer,
    embeddings=_distilbert_embeddings, conventions=_distilbert_conventions,
    mlm_head=lambda mlm: MLMHead(mlm.vocab_transform, mlm.config.activation, mlm.vocab_layer_norm,
                                 mlm.vocab_projector),
    mlm_head_prefixes=("vocab_transform.", "vocab_layer_norm.", "vocab_projector."), mlm_head_parts=_plain_mlm_head)


# ---- ALBERT: one layer (per group) shared by every depth ------------------------------------------------------


def _albert_layers(model: nn.Module) -> list[nn.Module]:
    """The layer each of the L depths applies: the first (only) layer of its group, as AlbertTransformer does."""
    config = model.config
    groups = model.encoder.albert_layer_groups
    per_group = config.num_hidden_layers / config.num_hidden_groups
    return [groups[int(t / per_group)].albert_layers[0] for t in range(config.num_hidden_layers)]


def _albert_layer(layer: nn.Module) -> TeacherLayer:
    attention = layer.attention
    return TeacherLayer(query=attention.query, key=attention.key, value=attention.value, attn_out=attention.dense,
                        attn_norm=attention.LayerNorm, ffn_in=layer.ffn, ffn_out=layer.ffn_output,
                        ffn_norm=layer.full_layer_layer_norm)


def _albert_unsupported(config) -> str | None:
    if getattr(config, "inner_group_num", 1) != 1:
        return f"an ALBERT with inner_group_num {config.inner_group_num} (nasbert reads one layer per depth)"
    return None


ALBERT = TeacherFamily(
    label="ALBERT", encoder_layers=_albert_layers, layer=_albert_layer,
    embeddings=lambda model: _factorised(_bert_embeddings(model), model.encoder.embedding_hidden_mapping_in),
    conventions=lambda config: _conventions(config, embedding_size=config.embedding_size),
    mlm_head=lambda mlm: mlm.predictions, mlm_head_prefixes=("predictions.",), mlm_head_parts=_plain_mlm_head,
    unsupported=_albert_unsupported)


# ---- MPNet: BERT's layer plus a relative-position bias shared by all layers ----------------------------------


def _mpnet_layer(layer: nn.Module) -> TeacherLayer:
    attention = layer.attention
    return TeacherLayer(query=attention.attn.q, key=attention.attn.k, value=attention.attn.v, attn_out=attention.attn.o,
                        attn_norm=attention.LayerNorm, ffn_in=layer.intermediate.dense, ffn_out=layer.output.dense,
                        ffn_norm=layer.output.LayerNorm)


def _mpnet_embeddings(model: nn.Module) -> TeacherEmbeddings:
    e = model.embeddings
    return TeacherEmbeddings(word=e.word_embeddings, position=e.position_embeddings, token_type=None, norm=e.LayerNorm,
                             position_padding_idx=e.padding_idx)


MPNET = TeacherFamily(
    label="MPNet", encoder_layers=lambda model: model.encoder.layer, layer=_mpnet_layer, embeddings=_mpnet_embeddings,
    # MPNetEmbeddings numbers positions from its own padding_idx, 1, whatever the config's pad_token_id says.
    conventions=lambda config: _conventions(config, position_padding_idx=1, type_vocab_size=0),
    mlm_head=lambda mlm: mlm.lm_head, mlm_head_prefixes=("lm_head.",), mlm_head_parts=_roberta_mlm_head,
    not_inherited="the student inherits every weight but MPNet's relative-position attention bias, which it has no "
                  "place for and learns to do without during refinement")


# config.model_type -> adaptor. sentence-transformers' all-MiniLM-L6-v2 is a BertModel, all-mpnet-base-v2 an MPNet.
TEACHER_FAMILIES: dict[str, TeacherFamily] = {
    "bert": BERT, "roberta": ROBERTA, "xlm-roberta": XLM_ROBERTA, "distilbert": DISTILBERT, "electra": ELECTRA,
    "albert": ALBERT, "mpnet": MPNET,
}
