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
optimises is the sum of each loss times its `weight`. torch is imported inside the calls that need its
functions, so that reading the names (RefineConfig's validation, the command line's choices) does not load it.

Task distillation (`nasbert distill`) has its own registry, `TASK_LOSSES`, beside this one rather than in it:
its losses read other features (a task head's logits and labels, the layers a `--layer-map` pairs), a recipe
stage gives each its weight (so `weight` is not used), and refinement's `--losses` must not offer them. Their
features (`nasbert.finetune.distill` computes them; the third argument is a `TaskContext`):

    feature      teacher                                      student
    logits       (B, k) of its task head                      (B, k) of its task head
    task_loss    -                                            () the model's own loss on the labels
    states       {t: (B, T, H)} output of mapped layer t      {s: (B, T, w_s)} output of mapped layer s
    embeddings   (B, T, H) the embedding output               (B, T, E)
    attention    {t: (B, h, T, T)} scores Q K^T / sqrt(d)      {s: (B, h_s, T, T)}, for the attention pairs
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
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
    default: bool = True  # in the default `--losses` (an opt-in loss says False)
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


class SentenceLoss(DistillationLoss):
    """What sentence-embedding use reads (cosine of mean-pooled final states, bench/sts_zero_shot.py): each
    sequence's final states mean-pooled (B, H) and L2-normalised, then the MSE of the student's (B, B) cosine
    similarities against the teacher's plus the mean 1 - cosine of each sequence's embedding with the teacher's.
    Opt-in (`--losses ... sentence`): not in the default set."""

    needs = frozenset({"block_states"})
    student_needs = frozenset({"block_states"})
    default = False
    label = "sentence-embedding loss"

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        import torch.nn.functional as F

        s = F.normalize(student["block_states"][-1].float().mean(dim=1), dim=-1)  # (B, H); refinement has no padding
        t = F.normalize(teacher["block_states"][-1].float().mean(dim=1), dim=-1)  # (B, H)
        return F.mse_loss(s @ s.T, t @ t.T) + (1 - (s * t).sum(-1)).mean()


# Refinement losses, in the order they are computed, logged and summed.
REFINE_LOSSES: dict[str, DistillationLoss] = {"mlm": MlmLoss(), "kl": KlLoss(), "hidden": HiddenLoss(),
                                              "attention": AttentionLoss(), "sentence": SentenceLoss()}


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


# ---- task distillation (`nasbert distill`) ----------------------------------------------------------------------


def logit_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
             regression: bool) -> torch.Tensor:
    """KL(teacher || student) of the logits softened by T, times T^2 (Hinton et al.); for regression the MSE of the
    predictions. The same operations as `nasbert finetune --teacher`, so `distill --recipe kd` matches it."""
    import torch.nn.functional as F

    if regression:
        return F.mse_loss(student_logits.float(), teacher_logits.float())
    t = temperature
    student_log_probs = F.log_softmax(student_logits.float() / t, dim=-1)  # (B, k)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / t, dim=-1)  # (B, k)
    return F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True) * t * t


def patience_loss(student_cls: torch.Tensor, teacher_cls: torch.Tensor) -> torch.Tensor:
    """BERT-PKD's L_PT: MSE of the L2-normalised [CLS] vectors, both (B, layers, H), averaged over every element
    (the authors' `patience_loss`: F.normalize over the hidden axis, then F.mse_loss)."""
    import torch.nn.functional as F

    return F.mse_loss(F.normalize(student_cls.float(), p=2, dim=-1), F.normalize(teacher_cls.float(), p=2, dim=-1))


def attention_score_mse(student: torch.Tensor, teacher: torch.Tensor, attention_mask: torch.Tensor | None
                        ) -> torch.Tensor:
    """MSE of attention scores (B, h, T, T) over real (query, key) pairs; with different head counts, of the
    head-mean maps (B, 1, T, T)."""
    if student.shape[1] != teacher.shape[1]:
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    squared = (student.float() - teacher.float()).pow(2)  # (B, h, T, T)
    if attention_mask is None:
        return squared.mean()
    keep = attention_mask.to(squared.dtype)
    pairs = keep[:, None, :, None] * keep[:, None, None, :]  # (B, 1, T, T): 1 where query and key are tokens
    return (squared * pairs).sum() / (pairs.sum() * squared.shape[1]).clamp_min(1.0)


@dataclass
class TaskContext:
    """What a task loss needs besides the features: the layer pairs, the KD settings, the learned projections."""

    pairs: list[tuple[int, int]] = field(default_factory=list)  # (student layer, teacher layer) of --layer-map
    attention_pairs: list[tuple[int, int]] = field(default_factory=list)  # the pairs whose student has attention
    temperature: float = 1.0
    regression: bool = False
    attention_mask: Any = None  # (B, T), 1 = token
    projections: Mapping[str, Callable] = field(default_factory=dict)  # name -> module, student width -> teacher's
    training: bool = True

    def project(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x through the learned map `name`, or x itself where there is none (the widths already agree)."""
        return self.projections[name](x) if name in self.projections else x


class TaskLoss(DistillationLoss):
    """A task-distillation loss; `projection` names the learned student -> teacher width maps it reads:
    "{projection}.s{s}" per mapped layer, or "embedding"; `always_project`: learn one even where widths agree."""

    projection: str | None = None
    always_project: bool = True


class HardLoss(TaskLoss):
    """The task loss on the labels (cross-entropy, or MSE for regression): the model's own."""

    student_needs = frozenset({"task_loss"})
    label = "task loss"

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        return student["task_loss"]


class SoftLoss(TaskLoss):
    """Soft labels: T^2 KL(softmax(z_t / T) || softmax(z_s / T)), the MSE of the predictions for regression."""

    needs = student_needs = frozenset({"logits"})
    label = "soft-label loss"

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        return logit_kd(student["logits"], teacher["logits"], config.temperature, config.regression)


class LogitMseLoss(TaskLoss):
    """MSE of the logits (XtremeDistil's logit regression)."""

    needs = student_needs = frozenset({"logits"})
    label = "logit MSE"

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        import torch.nn.functional as F

        return F.mse_loss(student["logits"].float(), teacher["logits"].float())


class PatientLoss(TaskLoss):
    """BERT-PKD's patient loss over the mapped layers' [CLS] vectors (a learned map only where widths differ)."""

    needs = student_needs = frozenset({"states"})
    projection, always_project = "pkd", False
    label = "patient [CLS] loss"

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        import torch

        s_cls = torch.stack([config.project(f"pkd.s{s}", student["states"][s][:, 0]) for s, _ in config.pairs], 1)
        t_cls = torch.stack([teacher["states"][t][:, 0] for _, t in config.pairs], 1)  # (B, layers, H)
        return patience_loss(s_cls, t_cls)


class HiddenMseLoss(TaskLoss):
    """TinyBERT's hidden loss: sum over the mapped layers of MSE(H_s W_h, H_t), real tokens only."""

    needs = student_needs = frozenset({"states"})
    projection = "hidden"
    label = "hidden-state MSE"

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        return sum(masked_mse(config.project(f"hidden.s{s}", student["states"][s]), teacher["states"][t],
                              config.attention_mask) for s, t in config.pairs)


class EmbeddingMseLoss(TaskLoss):
    """TinyBERT's embedding loss: MSE(E_s W_e, E_t), real tokens only."""

    needs = student_needs = frozenset({"embeddings"})
    projection = "embedding"
    label = "embedding MSE"

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        return masked_mse(config.project("embedding", student["embeddings"]), teacher["embeddings"],
                          config.attention_mask)


class AttentionMseLoss(TaskLoss):
    """TinyBERT's attention loss: sum over the attention pairs of the MSE of unnormalised scores."""

    needs = student_needs = frozenset({"attention"})
    label = "attention-score MSE"

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        import torch

        terms = [attention_score_mse(student["attention"][s], teacher["attention"][t], config.attention_mask)
                 for s, t in config.attention_pairs]
        return sum(terms) if terms else torch.zeros((), device=config.attention_mask.device)


class ClsMseLoss(TaskLoss):
    """XtremeDistil's representation loss: sum over the mapped layers of MSE(Dense(dropout([CLS]_s)), [CLS]_t)."""

    needs = student_needs = frozenset({"states"})
    projection = "cls"
    label = "[CLS] MSE"
    dropout = 0.1

    def __call__(self, student: Mapping[str, Any], teacher: Mapping[str, Any], config: Any) -> torch.Tensor:
        import torch.nn.functional as F

        return sum(F.mse_loss(config.project(f"cls.s{s}", F.dropout(student["states"][s][:, 0].float(),
                                                                    self.dropout, config.training)),
                              teacher["states"][t][:, 0].float()) for s, t in config.pairs)


# Task-distillation losses; a recipe stage names them with their weights.
TASK_LOSSES: dict[str, TaskLoss] = {
    "hard": HardLoss(), "soft": SoftLoss(), "logit_mse": LogitMseLoss(), "pkd": PatientLoss(),
    "hidden_mse": HiddenMseLoss(), "embedding_mse": EmbeddingMseLoss(), "attention_mse": AttentionMseLoss(),
    "cls_mse": ClsMseLoss()}
