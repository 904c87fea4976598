"""One stage's loss (`StagePlan`) and the Hugging Face Trainer that optimises it (`DistillTrainer`).

The loss of a training step is the sum, over the stage's `TASK_LOSSES` entries, of weight x loss(student
features, teacher features, context); the teacher forward (no grad) computes only the features the entries
need, and only the teacher of this step runs (SKD draws one member of the team per step). Learned projections
(student width -> teacher width) hang under the student as `distill_projections` for the stage, so the
Trainer's optimizer, device placement and DDP treat them like the student's own weights; the runner detaches
them before the student is saved. Evaluation (the head on the dev set) reports the task loss alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nasbert.common.losses import TASK_LOSSES, TaskContext
from nasbert.finetune.distill.registry import Stage
from nasbert.finetune.distill.views import ModelView

PROJECTIONS = "distill_projections"  # the student's attribute holding the stage's projections


class StagePlan:
    """What a stage computes each step: the features each side needs, the losses and their weights."""

    def __init__(self, stage: Stage, student_view: ModelView, teachers: Sequence[tuple[nn.Module, ModelView]],
                 pairs: list[tuple[int, int]], temperature: float, regression: bool,
                 pick: Callable[[int], int] | None = None):
        self.stage, self.student_view, self.teachers = stage, student_view, teachers
        self.pick = pick or (lambda step: 0)  # the team member of a step (SKD); else the one teacher
        self.losses = {name: (TASK_LOSSES[name], weight) for name, weight in stage.losses.items()}
        self.student_needs = set().union(*(loss.student_needs for loss, _ in self.losses.values()))
        self.teacher_needs = set().union(*(loss.needs for loss, _ in self.losses.values()))
        self.pairs = pairs if {"states", "attention"} & (self.student_needs | self.teacher_needs) else []
        self.attention_pairs = [(s, t) for s, t in self.pairs if s in student_view.attention]
        if "attention" in self.student_needs:
            student_view.watch_attention([s for s, _ in self.attention_pairs])
            for _, view in teachers:
                view.watch_attention([t for _, t in self.attention_pairs])
        self.temperature, self.regression = temperature, regression
        self.drawn: dict[int, int] = {}  # optimizer step -> team member (SKD)

    @property
    def uses_teacher(self) -> bool:
        return bool(self.teacher_needs)

    def projection_shapes(self, student: nn.Module, batch: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
        """name -> (student width, teacher width) of every learned map the stage's losses read (a dry forward)."""
        wanted = [loss for loss, _ in self.losses.values() if loss.projection]
        if not wanted:
            return {}
        with torch.no_grad():
            s_feats, _ = self.student_view.features(student, batch, {"states"}, [s for s, _ in self.pairs])
            teacher, view = self.teachers[0]
            t_feats, _ = view.features(teacher, batch, {"states"}, [t for _, t in self.pairs])
        shapes = {}
        for loss in wanted:
            if loss.projection == "embedding":
                items = [("embedding", s_feats["embeddings"], t_feats["embeddings"])]
            else:
                items = [(f"{loss.projection}.s{s}", s_feats["states"][s], t_feats["states"][t]) for s, t in self.pairs]
            for name, s_state, t_state in items:
                if loss.always_project or s_state.shape[-1] != t_state.shape[-1]:
                    shapes[name] = (s_state.shape[-1], t_state.shape[-1])
        return shapes

    def loss(self, model: nn.Module, inputs: Mapping[str, Any], step: int, training: bool = True
             ) -> tuple[torch.Tensor, dict[str, float], Any]:
        """(total, each term's value, the student's outputs) on one batch; step picks the team member."""
        student_layers = [s for s, _ in self.pairs]
        attention_layers = [s for s, _ in self.attention_pairs]
        s_feats, outputs = self.student_view.features(model, inputs, self.student_needs | {"logits"}, student_layers,
                                                      attention_layers)
        t_feats = {}
        if self.uses_teacher:
            member = self.pick(step)
            if training and self.stage.teacher == "team":
                self.drawn.setdefault(step, member)
            teacher, view = self.teachers[member]
            with torch.no_grad():
                t_feats, _ = view.features(teacher, inputs, self.teacher_needs, [t for _, t in self.pairs],
                                           [t for _, t in self.attention_pairs])
        unwrapped = getattr(model, "module", model)  # DDP keeps the student in .module
        context = TaskContext(pairs=self.pairs, attention_pairs=self.attention_pairs, temperature=self.temperature,
                              regression=self.regression, attention_mask=inputs.get("attention_mask"),
                              projections=getattr(unwrapped, PROJECTIONS, {}), training=training)
        total, terms = None, {}
        for name, (loss, weight) in self.losses.items():
            value = loss(s_feats, t_feats, context)
            terms[name] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        return total, terms, outputs


def distill_trainer_class():
    """The Trainer subclass (built on first use: transformers loads only when a stage runs)."""
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """The Trainer with the stage's loss; like finetune's, a per-batch mean computed here, not rescaled."""

        loss_is_scaled_for_ga = False

        def __init__(self, *args, plan: StagePlan, **kwargs):
            super().__init__(*args, **kwargs)
            self.plan = plan
            for teacher, _ in plan.teachers:
                teacher.to(self.args.device)
            self._terms: dict[str, list[float]] = {}  # since the last log
            self.term_sums: dict[str, float] = {}
            self.term_steps = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not model.training:  # evaluation: the task loss alone
                outputs = model(**inputs)
                return (outputs.loss, outputs) if return_outputs else outputs.loss
            loss, terms, outputs = self.plan.loss(model, inputs, self.state.global_step)
            for name, value in terms.items():
                self._terms.setdefault(name, []).append(value)
                self.term_sums[name] = self.term_sums.get(name, 0.0) + value
            self.term_steps += 1
            return (loss, outputs) if return_outputs else loss

        def log(self, logs: dict[str, float], *args, **kwargs) -> None:
            if self._terms and "loss" in logs:
                for name, values in self._terms.items():
                    logs[f"{name}_loss"] = round(sum(values) / len(values), 4)
                self._terms.clear()
            super().log(logs, *args, **kwargs)

    return DistillTrainer
