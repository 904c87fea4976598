"""Elastic ops: one module per op family holds the weights of its largest width; every smaller width uses
the leading slices (`W[:out, :in]`, heads `[:w/head_dim]`, FFN neurons `[:ratio*w]`, channels `[:w]`).

Slicing lives here and only here. Each op's `export(width)` returns the sliced weights under the names
of the matching standalone student module (`nasbert/modeling_nasbert.py`), so extraction is a copy.
`ELASTIC_OPS` maps an op family (the key of `search_space.ops.FAMILIES`) to its module, which builds itself
for a space with `from_space(space, op)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from search_space import SearchSpace, get_op


class ElasticLinear(nn.Module):
    """A linear layer of shape (max_out, max_in) used at any leading (out, in) slice."""

    def __init__(self, max_in: int, max_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_out, max_in))
        self.bias = nn.Parameter(torch.zeros(max_out))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor, out_features: int) -> torch.Tensor:
        in_features = x.shape[-1]
        return F.linear(x, self.weight[:out_features, :in_features], self.bias[:out_features])

    def export(self, in_features: int, out_features: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight[:out_features, :in_features], "bias": self.bias[:out_features]}


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


class ElasticOp(nn.Module):
    """An op's shared weights at the space's largest width: `forward(x, attn_mask, pad_mask)` at x's width,
    `export(width)` the student module's weights at that width."""

    @classmethod
    def from_space(cls, space: SearchSpace, op: str) -> ElasticOp:
        """The module of op `op` (e.g. S5) for `space`'s largest width."""
        raise NotImplementedError

    def export(self, width: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class ElasticAttention(ElasticOp):
    """Op M at width w: w/head_dim heads of head_dim; heads are leading slices of the q/k/v outputs."""

    def __init__(self, max_width: int, head_dim: int):
        super().__init__()
        self.head_dim = head_dim
        self.query = ElasticLinear(max_width, max_width)
        self.key = ElasticLinear(max_width, max_width)
        self.value = ElasticLinear(max_width, max_width)
        self.output = ElasticLinear(max_width, max_width)

    @classmethod
    def from_space(cls, space: SearchSpace, op: str) -> ElasticAttention:
        return cls(space.max_width, space.head_dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, pad_mask: torch.Tensor | None) -> torch.Tensor:
        batch, seq_len, width = x.shape
        shape = (batch, seq_len, width // self.head_dim, self.head_dim)
        q = self.query(x, width).view(shape).transpose(1, 2)  # (B, nh, T, hd)
        k = self.key(x, width).view(shape).transpose(1, 2)
        v = self.value(x, width).view(shape).transpose(1, 2)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=1 / math.sqrt(self.head_dim))
        return self.output(context.transpose(1, 2).reshape(batch, seq_len, width), width)

    def export(self, width: int) -> dict[str, torch.Tensor]:
        state = {}
        for name in ("query", "key", "value", "output"):
            state.update(_prefixed(name, getattr(self, name).export(width, width)))
        return state


class ElasticFeedForward(ElasticOp):
    """Op F at width w: the first ratio*w neurons of the largest FFN."""

    def __init__(self, max_width: int, ffn_ratio: int):
        super().__init__()
        self.ffn_ratio = ffn_ratio
        self.intermediate = ElasticLinear(max_width, ffn_ratio * max_width)
        self.output = ElasticLinear(ffn_ratio * max_width, max_width)

    @classmethod
    def from_space(cls, space: SearchSpace, op: str) -> ElasticFeedForward:
        return cls(space.max_width, space.ffn_ratio)

    def forward(self, x: torch.Tensor, attn_mask=None, pad_mask=None) -> torch.Tensor:
        width = x.shape[-1]
        return self.output(F.gelu(self.intermediate(x, self.ffn_ratio * width)), width)

    def export(self, width: int) -> dict[str, torch.Tensor]:
        inner = self.ffn_ratio * width
        return {**_prefixed("intermediate", self.intermediate.export(width, inner)),
                **_prefixed("output", self.output.export(inner, width))}


class ElasticSepConv(ElasticOp):
    """Op S<k> at width w: the first w channels of a depthwise conv (no bias), GELU, pointwise w x w."""

    def __init__(self, max_width: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.depthwise_weight = nn.Parameter(torch.empty(max_width, 1, kernel_size))  # (C, 1, k) as Conv1d's
        nn.init.normal_(self.depthwise_weight, std=0.02)
        self.pointwise = ElasticLinear(max_width, max_width)

    @classmethod
    def from_space(cls, space: SearchSpace, op: str) -> ElasticSepConv:
        return cls(space.max_width, get_op(op).kernel_size)

    def forward(self, x: torch.Tensor, attn_mask=None, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        width = x.shape[-1]
        if pad_mask is not None:
            x = x * pad_mask  # (B, T, w): padded positions must not leak into real ones
        y = F.conv1d(x.transpose(1, 2), self.depthwise_weight[:width], padding=self.kernel_size // 2, groups=width)
        return self.pointwise(F.gelu(y.transpose(1, 2)), width)  # (B, T, w)

    def export(self, width: int) -> dict[str, torch.Tensor]:
        return {"depthwise.weight": self.depthwise_weight[:width], **_prefixed("pointwise",
                                                                               self.pointwise.export(width, width))}


ELASTIC_OPS: dict[str, type[ElasticOp]] = {"M": ElasticAttention, "F": ElasticFeedForward, "S": ElasticSepConv}


def elastic_op(space: SearchSpace, op: str) -> ElasticOp:
    """The elastic module of op `op` (M, F, S5, ...) for `space`, from its family's entry in ELASTIC_OPS."""
    family = get_op(op).family
    if family not in ELASTIC_OPS:
        raise KeyError(f"op family {family!r} has no elastic module; known are {', '.join(ELASTIC_OPS)}")
    return ELASTIC_OPS[family].from_space(space, op)
