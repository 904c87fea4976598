"""Distillation losses: the loss math, and the registry of refinement losses.

The registry lives here, in common/, and not in export/, because the losses are not the export stage's: stage 1
uses `masked_mse`, stage 4 (refinement) `REFINE_LOSSES`, and task distillation (stage 5, the next issue) adds its
own registry of the same `DistillationLoss` entries (logits KD, hidden states, attention relations reuse the
functions below).

A loss entry compares named *features* of the student and of the teacher; it declares which teacher features it
`needs` (the teacher forward computes only the union of the configured losses' needs) and which student features
it reads (`student_needs`; a student that cannot give them, e.g. one without an attention layer, goes without the
loss). The refinement features (`nasbert.export.refine` computes them):

    feature          teacher                                   student
    mlm_logits       (M, V) of its MLM head, masked positions  (M, V) of its MLM head, masked positions
    mlm_labels       -                                         (M,) the masked tokens
    block_states     [Y_1 .. Y_N] (B, T, H) at block boundaries [adapter(h_1) .. adapter(h_N-1), h_N] (B, T, H)
    attention_qkv    {q, k, v: (B, T, H), heads, head_dim}     {q, k, v: (B, T, D)} of the last attention layer

Adding a loss is one entry: `register_loss("name", MyLoss())`, then `--losses name`. The total a student
optimises is the sum of each loss times its `weight`. torch is imported inside the two calls that need its
functions, so that reading the names (RefineConfig's validation, the command line's choices) does not load it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over real tokens only: prediction, target (B, T, H); attention_mask (B, T), 1 = token."""
    squared = (prediction.float() - target.float()).pow(2).mean(dim=-1)  # (B, T)
    if attention_mask is None:
        return squared.mean()
    keep = attention_mask.to(squared.dtype)
    return (squared * keep).sum() / keep.sum().clamp_min(1.0)


def relation_log_probs(a: torch.Tensor, b: torch.Tensor, heads: int) -> torch.Tensor:
    """log softmax(A_r B_r^T / sqrt(d)) over R relation heads: a, b (B, T, D) -> (B, R, T, T)."""
    batch, seq_len, width = a.shape
    d = width // heads
    a = a.view(batch, seq_len, heads, d).transpose(1, 2)  # (B, R, T, d)
    b = b.view(batch, seq_len, heads, d).transpose(1, 2)
    return (a @ b.transpose(-1, -2) / math.sqrt(d)).float().log_softmax(-1)


def kl_from_log_probs(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student), summed over the last axis and averaged over the rest."""
    return (teacher.exp() * (teacher - student)).sum(-1).mean()


class DistillationLoss:
    """One entry of a loss registry: what it reads, how much it weighs, and the loss itself."""

    needs: frozenset[str] = frozenset()  # teacher features
    student_needs: frozenset[str] = frozenset()  # student features
    requires: tuple[str, ...] = ()  # other entries that are always used with this one
    label: str = "loss"  # how notes name it: "{student} has no attention layer: its {label} is left out"

    def weight(self, config: Any, active: Collection[str]) -> float:
        """Its factor in the total, given the stage's config and the names of all losses in use."""
        return 1.0

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        """A scalar loss from the student's and the teacher's features (all of `student_needs` and `needs`)."""
        raise NotImplementedError


class MlmLoss(DistillationLoss):
    """Cross-entropy of the student's MLM head on the masked tokens."""

    student_needs = frozenset({"mlm_logits", "mlm_labels"})
    label = "MLM loss"

    def weight(self, config: Any, active: Collection[str]) -> float:
        return 1 - config.kl_lambda if "kl" in active else 1.0

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        import torch.nn.functional as F

        return F.cross_entropy(student["mlm_logits"].float(), student["mlm_labels"])


class KlLoss(DistillationLoss):
    """KL(teacher || student) of the MLM distributions on the masked tokens, at temperature T, times T^2; mixed
    with the MLM loss as (1 - lambda) * mlm + lambda * kl (NAS-BERT: lambda = 0.5)."""

    needs = frozenset({"mlm_logits"})
    student_needs = frozenset({"mlm_logits"})
    requires = ("mlm",)
    label = "KL loss on its MLM logits"

    def weight(self, config: Any, active: Collection[str]) -> float:
        return config.kl_lambda

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        t = config.temperature
        return kl_from_log_probs((teacher["mlm_logits"].float() / t).log_softmax(-1),
                                 (student["mlm_logits"].float() / t).log_softmax(-1)) * t * t


class HiddenLoss(DistillationLoss):
    """MSE between each block's output (mapped to the teacher's width) and the teacher's state at that boundary,
    averaged over the blocks."""

    needs = frozenset({"block_states"})
    student_needs = frozenset({"block_states"})
    label = "hidden-state loss"

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        pairs = zip(student["block_states"], teacher["block_states"])
        return torch.stack([F.mse_loss(m.float(), y.float()) for m, y in pairs]).mean()


class AttentionLoss(DistillationLoss):
    """MiniLM(v2) relations of the last attention layer over R relation heads: KL of softmax(Q K^T / sqrt(d)) plus
    KL of softmax(V V^T / sqrt(d)), teacher against student."""

    needs = frozenset({"attention_qkv"})
    student_needs = frozenset({"attention_qkv"})
    label = "attention-relation loss"

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        s, t = student["attention_qkv"], teacher["attention_qkv"]
        heads = config.relation_heads or math.gcd(t["heads"], s["q"].shape[-1] // t["head_dim"])
        attention = kl_from_log_probs(relation_log_probs(t["q"], t["k"], heads),
                                      relation_log_probs(s["q"], s["k"], heads))
        values = kl_from_log_probs(relation_log_probs(t["v"], t["v"], heads),
                                   relation_log_probs(s["v"], s["v"], heads))
        return attention + values


# Refinement losses, in the order they are computed, logged and summed.
REFINE_LOSSES: dict[str, DistillationLoss] = {"mlm": MlmLoss(), "kl": KlLoss(), "hidden": HiddenLoss(),
                                              "attention": AttentionLoss()}


def register_loss(name: str, loss: DistillationLoss,
                  registry: dict[str, DistillationLoss] = REFINE_LOSSES) -> DistillationLoss:
    """Add a loss under a new name (refinement's registry by default); returns it."""
    if name in registry:
        raise ValueError(f"a loss named {name!r} is already registered")
    registry[name] = loss
    return loss


def active_losses(names: Collection[str], registry: Mapping[str, DistillationLoss] = REFINE_LOSSES) -> list[str]:
    """The losses in use for the chosen `names`: with the ones they require, in the registry's order."""
    chosen = set(names)
    chosen |= {required for name in names for required in registry[name].requires}
    return [name for name in registry if name in chosen]
