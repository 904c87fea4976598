"""Refinement: pre-training distillation of one or more students from the teacher, sharing each teacher forward.

The losses are the entries of `nasbert.common.losses.REFINE_LOSSES` (select any with `losses`; each is logged per
student, with the weighted `total` it optimises):
- `mlm`:       cross-entropy of the student's MLM head on the masked tokens;
- `kl`:        KL(teacher || student) of the MLM distributions on the masked tokens (temperature T, times T^2),
               mixed as (1 - lambda) * mlm + lambda * kl (NAS-BERT: lambda = 0.5; `kl` brings `mlm` along); needs a
               teacher MLM head, without one it is dropped and said so;
- `hidden`:    MSE between each block's output, mapped to the teacher's width by an adapter (dropped at export),
               and the teacher's hidden state at that block boundary; the last block uses the student's own
               output projection;
- `attention`: MiniLM(v2)-style self-attention relations of the last attention layer, with R relation heads:
               KL of softmax(Q K^T / sqrt(d)) and of softmax(V V^T / sqrt(d)) between teacher and student.

Each step the teacher computes only the features the chosen losses need (their union), each student the ones its
losses read; `Refinee.forward` loops over its losses. A registered loss (`register_loss`) is chosen the same way.

Checkpoints, resume, DDP (one DDP wrapper per student), bf16 on CUDA, tensorboard and progress lines work as in
train-supernet (`nasbert.common.recipe`); a resumed run continues with exactly the losses of an uninterrupted one.
Rank 0 holds the refinement folder for the whole job; Ctrl-C or SIGTERM stops after the current step with a
checkpoint, prints the command that resumes, and exits 130 / 143 (`nasbert.common.signals`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nasbert.common.checkpoint import load_checkpoint, save_checkpoint
from nasbert.common.data import EpochSampler, build_corpus
from nasbert.common.distributed import DistributedContext, init_distributed
from nasbert.common.losses import REFINE_LOSSES, DistillationLoss, active_losses
from nasbert.common.masking import Masker
from nasbert.common.progress import progress_bar
from nasbert.common.recipe import (
    MetricsLog,
    autocast,
    capture_rng,
    check_run_dir,
    hold_job_folder,
    restore_rng,
    warmup_linear,
)
from nasbert.common.signals import StopSignals, resume_command
from nasbert.common.teacher import Teacher
from nasbert.errors import UserError
from nasbert.export.config import RefineConfig
from nasbert.modeling_nasbert import NasbertForMaskedLM

# The features (see nasbert.common.losses) each side can give, and what lacks when one of them cannot.
TEACHER_FEATURES = frozenset({"mlm_logits", "block_states", "attention_qkv"})
STUDENT_FEATURES = frozenset({"mlm_logits", "mlm_labels", "block_states", "attention_qkv"})
WITHOUT = {"mlm_logits": "MLM head", "attention_qkv": "attention layer"}


class Capture:
    """Keeps the outputs of q/k/v linears during a forward (for the attention-relation loss)."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            self.outputs[name] = output
        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def teacher_capture(teacher: Teacher) -> Capture:
    """Captures q/k/v of the teacher's last attention layer."""
    last = teacher.layer(-1)
    return Capture({"q": last.query, "k": last.key, "v": last.value})


def teacher_provides(teacher: Teacher) -> set[str]:
    """The features this teacher can give: all of them, but MLM logits only with an MLM head."""
    return set(TEACHER_FEATURES) - (set() if teacher.mlm_head is not None else {"mlm_logits"})


@torch.no_grad()
def teacher_features(teacher: Teacher, ids: torch.Tensor, labels: torch.Tensor, needs: Collection[str],
                     capture: Capture | None) -> dict:
    """The teacher's features named in `needs`, from one forward (`capture` must hook it for attention_qkv)."""
    out = teacher.model(input_ids=ids, output_hidden_states="block_states" in needs)
    features = {}
    if "block_states" in needs:
        features["block_states"] = [out.hidden_states[i] for i in teacher.boundaries[1:]]  # Y_1 .. Y_N (B, T, H)
    if "mlm_logits" in needs:
        features["mlm_logits"] = teacher.mlm_head(out.last_hidden_state[labels != -100])  # (M, V)
    if "attention_qkv" in needs:
        config = teacher.config
        features["attention_qkv"] = {**capture.outputs, "heads": config.num_attention_heads,
                                     "head_dim": config.hidden_size // config.num_attention_heads}
    return features


class Refinee(nn.Module):
    """A student, its block adapters, and its losses against one teacher forward."""

    def __init__(self, student: NasbertForMaskedLM, adapters: nn.ModuleList):
        super().__init__()
        self.student = student
        self.adapters = adapters
        attention_layers = [layer for block in student.nasbert.encoder.blocks for layer in block.layers
                            if layer.family == "M"]
        last = attention_layers[-1].op if attention_layers else None
        self.capture = Capture({"q": last.query, "k": last.key, "v": last.value}) if last is not None else None
        self.losses: dict[str, DistillationLoss] = {}  # the recipe's choice, less those this student cannot take

    @property
    def provides(self) -> set[str]:
        """The features this student can give (attention_qkv only with an attention layer)."""
        return set(STUDENT_FEATURES) - (set() if self.capture is not None else {"attention_qkv"})

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, teacher_out: dict,
                config: RefineConfig) -> dict[str, torch.Tensor]:
        out = self.student.nasbert(ids, output_hidden_states=True)
        states = out.hidden_states  # (embeddings, block 1 .. block N, final (B, T, H))
        needs = set().union(*(loss.student_needs for loss in self.losses.values()))
        chosen = labels != -100
        features = {"mlm_labels": labels[chosen]}
        if "mlm_logits" in needs and chosen.any():
            features["mlm_logits"] = self.student.cls(out.last_hidden_state[chosen])  # (M, V): masked positions only
        if "block_states" in needs:
            features["block_states"] = [adapter(h) for adapter, h in zip(self.adapters, states[1:-2])] + [states[-1]]
        if "attention_qkv" in needs and self.capture is not None:
            features["attention_qkv"] = self.capture.outputs
        # A batch without masked tokens has no MLM logits: the losses on them skip it.
        return {name: loss(features, teacher_out, config) for name, loss in self.losses.items()
                if loss.student_needs <= features.keys()}


class RefineRecipe:
    """Refines several students together: setup / train / save_checkpoint / cleanup."""

    def __init__(self, config: RefineConfig, teacher: Teacher, students: dict[str, NasbertForMaskedLM],
                 adapters: dict[str, nn.ModuleList]):
        self.config = config
        self.teacher = teacher
        self.names = list(students)
        self.refinees = {name: Refinee(students[name], adapters[name]) for name in self.names}
        self.run_dir = Path(config.output)
        self.step = 0
        self.metrics: MetricsLog | None = None
        self.teacher_capture: Capture | None = None
        self.notes: list[str] = []
        self._held = ExitStack()  # the refinement folder, held by rank 0 from setup to cleanup

    def setup(self) -> None:
        config = self.config
        self.ctx: DistributedContext = init_distributed(config.device)
        hold_job_folder(self._held, self.ctx, self.run_dir, "export")  # before any write
        self._choose_losses()
        if self.ctx.is_main:
            for note in self.notes:
                print(f"note: {note}")
        checkpoint = check_run_dir(self.run_dir, "refine_config.json", config.resume, holds="a refinement",
                                   output="output")
        torch.manual_seed(config.seed)
        self.data = build_corpus(config.corpus_spec(), self.teacher.tokenizer, config.seed)
        self.sampler = EpochSampler(len(self.data["train"]), config.batch_size, config.seed, self.ctx.rank,
                                    self.ctx.world_size)
        self.masker = Masker(self.teacher.tokenizer, config.mlm_probability, config.whole_word_mask,
                             seed=config.seed * 1000 + self.ctx.rank)
        self.models, self.optimizers, self.schedulers = {}, {}, {}
        for name, refinee in self.refinees.items():
            refinee.to(self.ctx.device).train()
            self.models[name] = (DistributedDataParallel(refinee, find_unused_parameters=True)
                                 if self.ctx.enabled else refinee)
            optimizer = torch.optim.AdamW(refinee.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            self.optimizers[name] = optimizer
            self.schedulers[name] = warmup_linear(optimizer, config.warmup_steps, config.steps)
        if "attention_qkv" in self.needs:
            self.teacher_capture = teacher_capture(self.teacher)
        if checkpoint is not None:
            self._load(checkpoint)
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "refine_config.json").write_text(json.dumps(asdict(config), indent=2))
            self.metrics = MetricsLog.open(self.run_dir)

    def _choose_losses(self) -> None:
        """Each student's losses from the registry, their weights and the teacher features they need; a loss whose
        features the teacher or a student cannot give is left out there, with a note."""
        kept = []
        for name in self.config.losses:
            loss = REFINE_LOSSES[name]
            missing = loss.needs - teacher_provides(self.teacher)
            if missing:
                self.notes.append(f"the teacher has no {WITHOUT.get(min(missing), min(missing))}: the {loss.label} "
                                  f"is left out")
            else:
                kept.append(name)
        active = active_losses(kept)
        self.weights = {name: REFINE_LOSSES[name].weight(self.config, active) for name in active}
        self.needs = set().union(*(REFINE_LOSSES[name].needs for name in active))
        for student, refinee in self.refinees.items():
            for name in active:
                loss = REFINE_LOSSES[name]
                missing = loss.student_needs - refinee.provides
                if not missing:
                    refinee.losses[name] = loss
                elif name in self.config.losses:
                    self.notes.append(f"{student} has no {WITHOUT.get(min(missing), min(missing))}: its "
                                      f"{loss.label} is left out")

    def train_step(self, step: int) -> dict[str, dict[str, float]]:
        _, rows = self.sampler.indices(step)
        ids, labels = self.masker.with_labels(self.data["train"][rows]["input_ids"])
        ids, labels = ids.to(self.ctx.device), labels.to(self.ctx.device)
        logged = {}
        with autocast(self.ctx.device):
            teacher_out = teacher_features(self.teacher, ids, labels, self.needs, self.teacher_capture)
            for name in self.names:
                losses = self.models[name](ids, labels, teacher_out, self.config)
                total = torch.stack([self.weights[key] * value for key, value in losses.items()]).sum()
                total.backward()
                if self.config.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.refinees[name].parameters(), self.config.max_grad_norm)
                self.optimizers[name].step()
                self.schedulers[name].step()
                self.optimizers[name].zero_grad(set_to_none=True)
                logged[name] = {k: v.item() for k, v in losses.items()} | {"total": total.item()}
        return logged

    def train(self) -> None:
        config = self.config
        bar = progress_bar(total=config.steps, initial=self.step, desc="refine", disable=not self.ctx.is_main,
                           dynamic_ncols=True)
        started = time.perf_counter()
        with StopSignals() as stop:  # Ctrl-C / SIGTERM: finish the step, save, exit 130 / 143
            while self.step < config.steps:
                logged = self.train_step(self.step)
                self.step += 1
                if self.ctx.is_main:
                    bar.set_postfix({name: f"{v['total']:.3f}" for name, v in logged.items()})
                    bar.update(1)
                    scalars = {f"{name}/{key}": value for name, losses in logged.items()
                               for key, value in losses.items()}
                    self.metrics.log(self.step, scalars, losses=logged, elapsed_s=time.perf_counter() - started)
                stopping = stop.requested(self.ctx)  # every rank, the same answer
                if stopping or self.step % config.save_every == 0 or self.step == config.steps:
                    self.save_checkpoint()
                if stopping:
                    bar.close()
                    raise stop.interrupted(f"refinement checkpoint {self.run_dir / 'checkpoints' / f'step-{self.step}'}"
                                           f"; resume with: {resume_command('export')}")
        bar.close()

    def save_checkpoint(self) -> None:
        rng_states = self.ctx.all_gather_object(capture_rng(self.ctx.device, self.masker))
        if self.ctx.is_main:
            weights = {f"{name}/{k}": v for name in self.names for k, v in self.refinees[name].state_dict().items()}
            objects = {f"optimizer-{i}": self.optimizers[n].state_dict() for i, n in enumerate(self.names)}
            objects.update({f"scheduler-{i}": self.schedulers[n].state_dict() for i, n in enumerate(self.names)})
            objects.update({f"rng-rank{r}": state for r, state in enumerate(rng_states)})
            save_checkpoint(self.run_dir, self.step, weights, objects,
                            {"step": self.step, "students": self.names, "world_size": self.ctx.world_size},
                            self.config.keep_checkpoints)
        self.ctx.barrier()

    def _load(self, checkpoint: Path) -> None:
        names = [f"optimizer-{i}" for i in range(len(self.names))] + [
            f"scheduler-{i}" for i in range(len(self.names))] + [f"rng-rank{self.ctx.rank}"]
        weights, objects, state = load_checkpoint(checkpoint, names)
        if state.get("students") != self.names:
            raise UserError(f"checkpoint {checkpoint} refines {state.get('students')}, not {self.names}; resume "
                            f"with the same students")
        try:
            for i, name in enumerate(self.names):
                prefix = f"{name}/"
                self.refinees[name].load_state_dict({k[len(prefix):]: v for k, v in weights.items()
                                                     if k.startswith(prefix)})
                self.optimizers[name].load_state_dict(objects[f"optimizer-{i}"])
                self.schedulers[name].load_state_dict(objects[f"scheduler-{i}"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise UserError(f"checkpoint {checkpoint} does not fit these students ({str(error).splitlines()[0]})") \
                from None
        restore_rng(objects[f"rng-rank{self.ctx.rank}"], self.masker)
        self.step = state["step"]
        if self.ctx.is_main:
            print(f"resuming refinement from {checkpoint} (step {self.step})")

    def cleanup(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        for capture in [self.teacher_capture] + [refinee.capture for refinee in self.refinees.values()]:
            if capture is not None:
                capture.remove()
        self._held.close()


def refine(config: RefineConfig, teacher: Teacher, students: dict[str, NasbertForMaskedLM],
           adapters: dict[str, nn.ModuleList]) -> RefineRecipe:
    """Refine the students in place; returns the recipe (its notes and metrics path tell what happened)."""
    recipe = RefineRecipe(config, teacher, students, adapters)
    try:
        recipe.setup()
        recipe.train()
    finally:
        recipe.cleanup()
    return recipe
