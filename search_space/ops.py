"""Candidate operations of the NAS-BERT space: a registry of op specs.

Each spec knows its parameter count and FLOPs at a given width, so the whole space can be costed
without building a torch module. A new op is a new entry in `OPS` (and an elastic module in
`supernet/`, a module in `nasbert/modeling_nasbert.py`), not a flag threaded through the code.

Conventions (they must match the built modules exactly):
- every non-identity layer is post-LN with a residual, `x = LayerNorm(x + op(x))`; the LayerNorm adds 2w;
- linears have biases; the depthwise convolution has none;
- FLOPs count 2 per multiply-add of matmuls and convolutions only (LayerNorm, softmax, activations and
  bias adds are left out), at batch 1 and `seq_len` tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class OpSpec:
    """One candidate op: its name in arch strings and its costs at width w (head dim and FFN ratio given)."""

    name: str
    description: str
    params: Callable[[int, int, int], int]  # (width, head_dim, ffn_ratio) -> parameters, LayerNorm included
    flops: Callable[[int, int, int, int], int]  # (width, head_dim, ffn_ratio, seq_len) -> FLOPs at batch 1
    kernel_size: int = 0

    @property
    def is_identity(self) -> bool:
        return self.name == "I"


def _layer_norm_params(w: int) -> int:
    return 2 * w


def _mha_params(w: int, head_dim: int, ffn_ratio: int) -> int:
    return 4 * (w * w + w) + _layer_norm_params(w)  # q, k, v, o projections


def _mha_flops(w: int, head_dim: int, ffn_ratio: int, seq_len: int) -> int:
    projections = 2 * seq_len * 4 * w * w
    scores_and_mix = 2 * 2 * seq_len * seq_len * w  # Q @ K^T and P @ V over all heads
    return projections + scores_and_mix


def _ffn_params(w: int, head_dim: int, ffn_ratio: int) -> int:
    inner = ffn_ratio * w
    return (w * inner + inner) + (inner * w + w) + _layer_norm_params(w)


def _ffn_flops(w: int, head_dim: int, ffn_ratio: int, seq_len: int) -> int:
    return 2 * seq_len * 2 * w * ffn_ratio * w


def _sepconv_spec(kernel_size: int) -> OpSpec:
    def params(w: int, head_dim: int, ffn_ratio: int) -> int:
        return kernel_size * w + (w * w + w) + _layer_norm_params(w)  # depthwise (no bias) + pointwise

    def flops(w: int, head_dim: int, ffn_ratio: int, seq_len: int) -> int:
        return 2 * seq_len * (kernel_size * w + w * w)

    return OpSpec(f"S{kernel_size}", f"separable convolution, kernel {kernel_size}", params, flops, kernel_size)


IDENTITY = OpSpec("I", "identity (drops the layer)", lambda w, h, r: 0, lambda w, h, r, t: 0)

OPS: dict[str, OpSpec] = {
    "M": OpSpec("M", "multi-head attention, width/head_dim heads", _mha_params, _mha_flops),
    "F": OpSpec("F", "feed-forward, inner ffn_ratio*width, GELU", _ffn_params, _ffn_flops),
    "I": IDENTITY,
}


def register_op(spec: OpSpec) -> OpSpec:
    """Add an op to the registry (names are unique)."""
    if spec.name in OPS:
        raise ValueError(f"op {spec.name!r} is already registered")
    OPS[spec.name] = spec
    return spec


def sepconv_op(kernel_size: int) -> OpSpec:
    """The spec of a separable convolution of this kernel, registered on first use."""
    name = f"S{kernel_size}"
    if name not in OPS:
        register_op(_sepconv_spec(kernel_size))
    return OPS[name]


for _k in (3, 5, 7):
    sepconv_op(_k)


def get_op(name: str) -> OpSpec:
    """The spec registered under `name`; a KeyError names the known ops."""
    if name not in OPS:
        raise KeyError(f"unknown op {name!r}; known ops are {', '.join(sorted(OPS))}")
    return OPS[name]
