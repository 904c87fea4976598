"""Candidate operations of the NAS-BERT space: the op registry (the spec of every op family).

An op family is one entry of `FAMILIES`, keyed by its letter(s): M (attention), F (feed-forward), I (identity),
or a family with a kernel, S (separable convolution), whose ops are named by family and kernel (S3, S5, ...).
Each spec knows its parameter count and FLOPs at a given width, so the whole space can be costed without
building a torch module. The same family key names the op's other parts, one entry each, in the layer that
owns them:

    spec              search_space.ops.FAMILIES           (this file; its family is the latency family too)
    elastic module    supernet.elastic.ELASTIC_OPS
    student module    nasbert.modeling_nasbert.OP_CLASSES (that file stands alone, so it keeps its own dict)
    teacher copy      nasbert.train_supernet.etd.TEACHER_COPY (only ops with a teacher counterpart: M, F)

Conventions (they must match the built modules exactly):
- every non-identity layer is post-LN with a residual, `x = LayerNorm(x + op(x))`; the LayerNorm adds 2w;
- linears have biases; the depthwise convolution has none;
- FLOPs count 2 per multiply-add of matmuls and convolutions only (LayerNorm, softmax, activations and
  bias adds are left out), at batch 1 and `seq_len` tokens.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IDENTITY_NAME = "I"
_OP_NAME = re.compile(r"([A-Z]+)([1-9][0-9]*)?")  # family letters, then the kernel for a family with kernels


@dataclass(frozen=True)
class OpSpec:
    """One candidate op: its name in arch strings and its costs at width w (head dim and FFN ratio given)."""

    name: str
    description: str
    params: Callable[[int, int, int], int]  # (width, head_dim, ffn_ratio) -> parameters, LayerNorm included
    flops: Callable[[int, int, int, int], int]  # (width, head_dim, ffn_ratio, seq_len) -> FLOPs at batch 1
    kernel_size: int = 0

    @property
    def family(self) -> str:
        """The registry key of this op: its name without the kernel (S5 -> S)."""
        return split_op_name(self.name)[0]

    @property
    def is_identity(self) -> bool:
        return self.family == IDENTITY_NAME


@dataclass(frozen=True)
class OpFamily:
    """An entry of the registry: a family of one op (M, F, I), or of one op per kernel size (S: S3, S5, ...)."""

    name: str
    make_spec: Callable[[int], OpSpec]  # kernel size (0 for a family without kernels) -> the op's spec
    takes_kernel: bool = False

    def op_names(self, kernels: Iterable[int]) -> tuple[str, ...]:
        """The ops of this family in a space with these kernels."""
        return tuple(f"{self.name}{k}" for k in kernels) if self.takes_kernel else (self.name,)

    @property
    def pattern(self) -> str:
        """How its ops are written, for messages: 'M', or 'S<kernel>'."""
        return f"{self.name}<kernel>" if self.takes_kernel else self.name


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


FAMILIES: dict[str, OpFamily] = {}
OPS: dict[str, OpSpec] = {}  # every op by name, as families make them (S3, S5, ... on first use)


def split_op_name(name: str) -> tuple[str, int]:
    """(family, kernel) of an op name: 'S5' -> ('S', 5), 'M' -> ('M', 0); ValueError if it is not one."""
    match = _OP_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"{name!r} is not an op name (family letters, then a kernel for S)")
    return match.group(1), int(match.group(2) or 0)


def register_family(family: OpFamily) -> OpFamily:
    """Add an op family to the registry (keys are unique capital letters)."""
    if not re.fullmatch(r"[A-Z]+", family.name):
        raise ValueError(f"an op family is named by capital letters, not {family.name!r}")
    if family.name in FAMILIES:
        raise ValueError(f"op family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def register_op(spec: OpSpec) -> OpSpec:
    """Add an op without a kernel (its own family, keyed by its name) to the registry."""
    register_family(OpFamily(spec.name, lambda kernel_size: spec))
    OPS[spec.name] = spec
    return spec


def unregister_family(name: str) -> None:
    """Remove a family and its ops (for tests that register a toy op)."""
    FAMILIES.pop(name, None)
    for op in [op for op, spec in OPS.items() if spec.family == name]:
        del OPS[op]


def is_op_name(name: str) -> bool:
    """Whether `name` names an op of a registered family (S9 does even if no space uses it yet)."""
    try:
        family, kernel = split_op_name(name)
    except ValueError:
        return False
    return family in FAMILIES and FAMILIES[family].takes_kernel == (kernel > 0)


def is_identity(name: str) -> bool:
    return name == IDENTITY_NAME


def describe_op_names() -> str:
    """The registered ops as a user writes them: 'M, F, S<kernel> (e.g. S3) and I'."""
    names = [f"{f.pattern} (e.g. {f.name}3)" if f.takes_kernel else f.name
             for f in FAMILIES.values() if f.name != IDENTITY_NAME]
    return f"{', '.join(names)} and {IDENTITY_NAME}"


def get_op(name: str) -> OpSpec:
    """The spec of op `name` (a family's op with a kernel is made on first use); a KeyError names the known ops."""
    if name not in OPS:
        if not is_op_name(name):
            raise KeyError(f"unknown op {name!r}; known ops are {describe_op_names()}")
        family, kernel = split_op_name(name)
        OPS[name] = FAMILIES[family].make_spec(kernel)
    return OPS[name]


def sepconv_op(kernel_size: int) -> OpSpec:
    """The spec of a separable convolution of this kernel."""
    return get_op(f"S{kernel_size}")


register_op(OpSpec("M", "multi-head attention, width/head_dim heads", _mha_params, _mha_flops))
register_op(OpSpec("F", "feed-forward, inner ffn_ratio*width, GELU", _ffn_params, _ffn_flops))
IDENTITY = register_op(OpSpec(IDENTITY_NAME, "identity (drops the layer)", lambda w, h, r: 0, lambda w, h, r, t: 0))
register_family(OpFamily("S", _sepconv_spec, takes_kernel=True))
for _k in (3, 5, 7):
    sepconv_op(_k)
