"""The standalone NAS-BERT student: a Hugging Face model for any arch of any NAS-BERT space.

Imports only torch and transformers (and its own config beside it): this file is copied into every
exported student folder and must run where nasbert is not installed. That is also why it is one file of
~440 lines (transformers' one-file-per-model policy) rather than split.

Shape of the network (B batch, T tokens, E embedding size, w_n width of block n, H hidden_size):

    input_ids (B, T) -> embeddings (B, T, E) -> blocks[0].projection (B, T, w_1) -> layers of block 1
      -> blocks[1].projection (B, T, w_2) -> layers of block 2 -> ... -> output_projection (B, T, H)

Every layer is post-LN with a residual, `x = LayerNorm(x + dropout(op(x)))`, where op is one of
M (multi-head attention, w/head_dim heads), F (feed-forward, inner ffn_ratio*w), S<k> (separable
convolution: depthwise conv of kernel k over the sequence, GELU, pointwise w x w). Padding is masked in
attention (keys) and in convolutions (padded positions are zeroed before every convolution), so a pad
token changes no real token's output.

`OP_CLASSES` maps an op family (an op's name without its kernel: S5 -> S) to its module, as
`search_space.ops.FAMILIES` does for specs; this file keeps its own dict because it must stand alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from .configuration_nasbert import NasbertConfig


class NasbertEmbeddings(nn.Module):
    """Word + position (+ token-type) embeddings of size E, then LayerNorm and dropout (as BERT's).

    Follows the teacher's conventions: no token-type table when type_vocab_size is 0; with position_padding_idx p,
    positions are numbered from the input ids as RoBERTa's are (see `padding_position_ids`)."""

    def __init__(self, config: NasbertConfig):
        super().__init__()
        e = config.embedding_size
        self.position_padding_idx = padding = getattr(config, "position_padding_idx", None)
        self.word_embeddings = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, e, padding_idx=padding)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, e) if config.type_vocab_size > 0 else None
        eps = getattr(config, "embedding_layer_norm_eps", None)
        self.LayerNorm = nn.LayerNorm(e, eps=config.layer_norm_eps if eps is None else eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.register_buffer("position_ids", torch.arange(config.max_position_embeddings).expand((1, -1)),
                             persistent=False)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        seq_len = inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = self.position_ids[:, :seq_len]
            if self.position_padding_idx is not None:
                position_ids = (padding_position_ids(input_ids, self.position_padding_idx) if input_ids is not None
                                else position_ids + self.position_padding_idx + 1)
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))  # (B, T, E)


def padding_position_ids(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """RoBERTa's (fairseq's) position ids (B, T): padding_idx + 1, + 2, .. for tokens that are not padding_idx,
    padding_idx for those that are."""
    real = input_ids.ne(padding_idx).int()
    return (torch.cumsum(real, dim=1).type_as(real) * real).long() + padding_idx


def split_op(op: str) -> tuple[str, int]:
    """(family, kernel) of an op name: 'S5' -> ('S', 5), 'M' -> ('M', 0)."""
    family = op.rstrip("0123456789")
    return family, int(op[len(family):] or 0)


class NasbertOp(nn.Module):
    """A layer's op at width w: `forward(x, attn_mask, pad_mask)`, (B, T, w) -> (B, T, w)."""

    @classmethod
    def from_config(cls, config: NasbertConfig, op: str, width: int) -> NasbertOp:
        """The module of op `op` (e.g. S5) at `width`; ops without a kernel take (config, width)."""
        return cls(config, width)


class NasbertAttention(NasbertOp):
    """Op M: multi-head self-attention at width w with w/head_dim heads."""

    def __init__(self, config: NasbertConfig, width: int):
        super().__init__()
        self.num_heads = width // config.head_dim
        self.head_dim = config.head_dim
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)
        self.output = nn.Linear(width, width)
        self.dropout_prob = config.attention_probs_dropout_prob
        self.config = config

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, pad_mask: torch.Tensor | None) -> torch.Tensor:
        batch, seq_len, width = x.shape
        shape = (batch, seq_len, self.num_heads, self.head_dim)
        q = self.query(x).view(shape).transpose(1, 2)  # (B, nh, T, hd)
        k = self.key(x).view(shape).transpose(1, 2)
        v = self.value(x).view(shape).transpose(1, 2)
        dropout = self.dropout_prob if self.training else 0.0
        attention = ATTENTION_FUNCTIONS.get(getattr(self.config, "_attn_implementation", "sdpa"), sdpa_attention)
        context = attention(q, k, v, attn_mask, dropout, self.training)  # (B, nh, T, hd)
        return self.output(context.transpose(1, 2).reshape(batch, seq_len, width))


def sdpa_attention(q, k, v, attn_mask, dropout: float, training: bool) -> torch.Tensor:
    """torch's fused scaled dot-product attention; `dropout` is already 0 outside training."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)


def eager_attention(q, k, v, attn_mask, dropout: float, training: bool) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V written out; attn_mask (B, 1, 1, T) bool, True = attend."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, nh, T, T)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)
    probs = F.dropout(scores.softmax(dim=-1), p=dropout, training=training)
    return probs @ v  # (B, nh, T, hd)


# By config._attn_implementation, as transformers' BERT_SELF_ATTENTION_CLASSES; anything else runs SDPA.
ATTENTION_FUNCTIONS = {"sdpa": sdpa_attention, "eager": eager_attention}


class NasbertFeedForward(NasbertOp):
    """Op F: w -> ffn_ratio*w -> w."""

    def __init__(self, config: NasbertConfig, width: int):
        super().__init__()
        self.intermediate = nn.Linear(width, config.ffn_ratio * width)
        self.act = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.ffn_ratio * width, width)

    def forward(self, x, attn_mask=None, pad_mask=None):
        return self.output(self.act(self.intermediate(x)))


class NasbertSepConv(NasbertOp):
    """Op S<k>: depthwise conv of kernel k over the sequence (no bias), GELU, pointwise w x w."""

    def __init__(self, config: NasbertConfig, width: int, kernel_size: int):
        super().__init__()
        self.depthwise = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2, groups=width, bias=False)
        self.pointwise = nn.Linear(width, width)

    @classmethod
    def from_config(cls, config: NasbertConfig, op: str, width: int) -> NasbertSepConv:
        return cls(config, width, split_op(op)[1])

    def forward(self, x, attn_mask=None, pad_mask=None):
        if pad_mask is not None:
            x = x * pad_mask  # (B, T, w): padded positions must not leak into real ones
        y = self.depthwise(x.transpose(1, 2)).transpose(1, 2)  # (B, T, w)
        return self.pointwise(F.gelu(y))


# Op family -> module; a new op is one entry here (its other entries: see search_space/ops.py's docstring).
OP_CLASSES: dict[str, type[NasbertOp]] = {"M": NasbertAttention, "F": NasbertFeedForward, "S": NasbertSepConv}


def build_op(config: NasbertConfig, op: str, width: int) -> NasbertOp:
    """The module of op `op` at `width`, from its family's entry in OP_CLASSES."""
    family = split_op(op)[0]
    if family not in OP_CLASSES:
        raise ValueError(f"unknown op {op!r} in arch {config.arch!r}; op families are {', '.join(OP_CLASSES)}")
    return OP_CLASSES[family].from_config(config, op, width)


class NasbertLayer(nn.Module):
    """x = LayerNorm(x + dropout(op(x)))."""

    def __init__(self, config: NasbertConfig, op: str, width: int):
        super().__init__()
        self.family = split_op(op)[0]  # which op this layer runs, e.g. "M" (distillation losses look for it)
        self.op = build_op(config, op, width)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def forward(self, x, attn_mask, pad_mask):
        return self.LayerNorm(x + self.dropout(self.op(x, attn_mask, pad_mask)))


class NasbertBlock(nn.Module):
    """The projection into this block's width, then its layers."""

    def __init__(self, config: NasbertConfig, in_width: int, width: int, ops: list[str], projection: bool = True):
        super().__init__()
        self.projection = nn.Linear(in_width, width) if projection else nn.Identity()
        self.layers = nn.ModuleList(NasbertLayer(config, op, width) for op in ops)

    def forward(self, x, attn_mask, pad_mask):
        x = self.projection(x)
        for layer in self.layers:
            x = layer(x, attn_mask, pad_mask)
        return x


def _check_projections(config: NasbertConfig, first_width: int, last_width: int) -> None:
    if not config.embedding_projection and config.embedding_size != first_width:
        raise ValueError(f"embedding_projection=False needs embedding_size == the first block's width "
                         f"({config.embedding_size} != {first_width})")
    if not config.output_projection and config.hidden_size != last_width:
        raise ValueError(f"output_projection=False needs hidden_size == the last block's width "
                         f"({config.hidden_size} != {last_width})")


class NasbertEncoder(nn.Module):
    def __init__(self, config: NasbertConfig):
        super().__init__()
        blocks = config.blocks
        in_widths = [config.embedding_size] + [w for w, _ in blocks[:-1]]
        _check_projections(config, in_widths[0], blocks[-1][0])
        self.blocks = nn.ModuleList(NasbertBlock(config, i, w, ops, projection=n > 0 or config.embedding_projection)
                                    for n, (i, (w, ops)) in enumerate(zip(in_widths, blocks)))
        self.output_projection = (nn.Linear(blocks[-1][0], config.hidden_size) if config.output_projection
                                  else nn.Identity())

    def forward(self, x, attn_mask, pad_mask, output_hidden_states: bool = False):
        hidden_states = [x] if output_hidden_states else None
        for block in self.blocks:
            x = block(x, attn_mask, pad_mask)
            if output_hidden_states:
                hidden_states.append(x)
        x = self.output_projection(x)  # (B, T, H)
        if output_hidden_states:
            hidden_states.append(x)
        return x, hidden_states


class NasbertPooler(nn.Module):
    def __init__(self, config: NasbertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden[:, 0]))


class NasbertPreTrainedModel(PreTrainedModel):
    config_class = NasbertConfig
    base_model_prefix = "nasbert"
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    # Our heads compute their own mean loss, so the Trainer must not rescale it for num_items_in_batch (DDP).
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, NasbertEmbeddings):
            module.position_ids.copy_(torch.arange(module.position_ids.shape[-1]).expand((1, -1)))


def padding_masks(attention_mask: torch.Tensor | None, dtype: torch.dtype):
    """(attention mask for SDPA (B, 1, 1, T) bool, mask for convolutions (B, T, 1)); both None without padding."""
    if attention_mask is None or bool(attention_mask.all()):
        return None, None
    keep = attention_mask.bool()
    return keep[:, None, None, :], keep[:, :, None].to(dtype)


def _finish(output, return_dict):
    """ModelOutput, or a tuple where the caller asked for return_dict=False."""
    return output if return_dict is not False else output.to_tuple()


class NasbertModel(NasbertPreTrainedModel):
    """The bare encoder. `hidden_states` (if asked) holds the embeddings, each block's output and the final output."""

    def __init__(self, config: NasbertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = NasbertEmbeddings(config)
        self.encoder = NasbertEncoder(config)
        self.pooler = NasbertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_hidden_states=None, return_dict=None, **kwargs):
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        attn_mask, pad_mask = padding_masks(attention_mask, x.dtype)
        x, hidden_states = self.encoder(x, attn_mask, pad_mask, bool(output_hidden_states))
        pooled = self.pooler(x) if self.pooler is not None else None
        output = BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=pooled,
                                            hidden_states=tuple(hidden_states) if hidden_states else None)
        return _finish(output, return_dict)


class NasbertForMaskedLM(NasbertPreTrainedModel):
    """MLM head: H -> E, GELU, LayerNorm, then the decoder tied to the word embeddings (vocab x E)."""

    _tied_weights_keys = {"cls.decoder.weight": "nasbert.embeddings.word_embeddings.weight"}

    def __init__(self, config: NasbertConfig):
        super().__init__(config)
        self.nasbert = NasbertModel(config, add_pooling_layer=False)
        self.cls = NasbertLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.decoder = new_embeddings

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states=None, return_dict=None, **kwargs):
        out = self.nasbert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_hidden_states=output_hidden_states)
        logits = self.cls(out.last_hidden_state)  # (B, T, vocab)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
        return _finish(MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.hidden_states), return_dict)


class NasbertLMHead(nn.Module):
    def __init__(self, config: NasbertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.LayerNorm(self.act(self.dense(hidden))))


class NasbertForSequenceClassification(NasbertPreTrainedModel):
    def __init__(self, config: NasbertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.nasbert = NasbertModel(config)
        drop = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(drop)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states=None, return_dict=None, **kwargs):
        out = self.nasbert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        loss = None if labels is None else self._loss(logits, labels)
        return _finish(SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states),
                       return_dict)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        problem = self.config.problem_type
        if problem is None:
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
            self.config.problem_type = problem
        if problem == "regression":
            return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
        if problem == "single_label_classification":
            return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class NasbertForTokenClassification(NasbertPreTrainedModel):
    def __init__(self, config: NasbertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.nasbert = NasbertModel(config, add_pooling_layer=False)
        drop = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(drop)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_hidden_states=None, return_dict=None, **kwargs):
        out = self.nasbert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_hidden_states=output_hidden_states)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1), ignore_index=-100)
        return _finish(TokenClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states), return_dict)


class NasbertForQuestionAnswering(NasbertPreTrainedModel):
    def __init__(self, config: NasbertConfig):
        super().__init__(config)
        self.nasbert = NasbertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        out = self.nasbert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           output_hidden_states=output_hidden_states)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(dim=-1)  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            seq_len = start_logits.shape[1]
            start = start_positions.clamp(0, seq_len)
            end = end_positions.clamp(0, seq_len)
            loss = (F.cross_entropy(start_logits, start, ignore_index=seq_len)
                    + F.cross_entropy(end_logits, end, ignore_index=seq_len)) / 2
        return _finish(QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                                    hidden_states=out.hidden_states), return_dict)


AUTO_CLASSES = {
    "AutoModel": NasbertModel,
    "AutoModelForMaskedLM": NasbertForMaskedLM,
    "AutoModelForSequenceClassification": NasbertForSequenceClassification,
    "AutoModelForTokenClassification": NasbertForTokenClassification,
    "AutoModelForQuestionAnswering": NasbertForQuestionAnswering,
}
