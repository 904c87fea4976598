"""Refinement: pre-training distillation of one or more students from the teacher, sharing each teacher forward.

Losses (select any with `losses`; each is logged per student):
- `mlm`:       cross-entropy of the student's MLM head on the masked tokens;
- `kl`:        KL(teacher || student) of the MLM distributions on the masked tokens (temperature T, times T^2),
               combined as (1 - lambda) * mlm + lambda * kl (NAS-BERT: lambda = 0.5); needs a teacher MLM head,
               without one it is dropped and said so;
- `hidden`:    MSE between each block's output, mapped to the teacher's width by an adapter (dropped at export),
               and the teacher's hidden state at that block boundary; the last block uses the student's own
               output projection;
- `attention`: MiniLM(v2)-style self-attention relations of the last attention layer, with R relation heads:
               KL of softmax(Q K^T / sqrt(d)) and of softmax(V V^T / sqrt(d)) between teacher and student.

Checkpoints, resume, DDP (one DDP wrapper per student), bf16 on CUDA, tensorboard and tqdm work as in
train-supernet; a resumed run continues with exactly the losses of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from nasbert.common.checkpoint import load_checkpoint, newest_checkpoint, save_checkpoint
from nasbert.common.data import CorpusSpec, EpochSampler, build_corpus
from nasbert.common.distributed import DistributedContext, init_distributed
from nasbert.common.masking import Masker
from nasbert.common.teacher import Teacher
from nasbert.errors import UserError
from nasbert.export.config import RefineConfig
from nasbert.modeling_nasbert import NasbertForMaskedLM


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


class Capture:
    """Keeps the outputs of q/k/v linears during a forward (for the attention-relation loss)."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            self.outputs[name] = output
        return hook


class Refinee(nn.Module):
    """A student, its block adapters, and its losses against one teacher forward."""

    def __init__(self, student: NasbertForMaskedLM, adapters: nn.ModuleList):
        super().__init__()
        self.student = student
        self.adapters = adapters
        attention_layers = [layer for block in student.nasbert.encoder.blocks for layer in block.layers
                            if type(layer.op).__name__ == "NasbertAttention"]
        last = attention_layers[-1].op if attention_layers else None
        self.capture = Capture({"q": last.query, "k": last.key, "v": last.value}) if last is not None else None

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, teacher_out: dict, config: RefineConfig,
                use_kl: bool) -> dict[str, torch.Tensor]:
        out = self.student.nasbert(ids, output_hidden_states=True)
        states = out.hidden_states  # (embeddings, block 1 .. block N, final (B, T, H))
        losses: dict[str, torch.Tensor] = {}
        chosen = labels != -100
        if ("mlm" in config.losses or use_kl) and chosen.any():
            logits = self.student.cls(out.last_hidden_state[chosen])  # (M, V): masked positions only
            mlm = F.cross_entropy(logits.float(), labels[chosen])
            if use_kl:
                t = config.temperature
                kl = kl_from_log_probs((teacher_out["mlm_logits"].float() / t).log_softmax(-1),
                                       (logits.float() / t).log_softmax(-1)) * t * t
                losses["kl"] = kl
                losses["mlm"] = mlm
                losses["mlm_kl"] = (1 - config.kl_lambda) * mlm + config.kl_lambda * kl
            else:
                losses["mlm"] = mlm
        if "hidden" in config.losses:
            targets = teacher_out["block_states"]  # Y_1 .. Y_N (B, T, H)
            mapped = [adapter(h) for adapter, h in zip(self.adapters, states[1:-2])] + [states[-1]]
            losses["hidden"] = torch.stack([F.mse_loss(m.float(), y.float()) for m, y in zip(mapped, targets)]).mean()
        if "attention" in config.losses and self.capture is not None:
            s, t = self.capture.outputs, teacher_out["qkv"]
            heads = config.relation_heads or math.gcd(t["heads"], s["q"].shape[-1] // t["head_dim"])
            attention = kl_from_log_probs(relation_log_probs(t["q"], t["k"], heads),
                                          relation_log_probs(s["q"], s["k"], heads))
            values = kl_from_log_probs(relation_log_probs(t["v"], t["v"], heads),
                                       relation_log_probs(s["v"], s["v"], heads))
            losses["attention"] = attention + values
        return losses


def total_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """The optimised sum: mlm_kl replaces mlm and kl where both are present."""
    parts = [v for k, v in losses.items() if not (k in ("mlm", "kl") and "mlm_kl" in losses)]
    return torch.stack(parts).sum()


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
        self.writer = None
        self.notes: list[str] = []

    def setup(self) -> None:
        config = self.config
        self.ctx: DistributedContext = init_distributed(config.device)
        self.use_kl = "kl" in config.losses and self.teacher.mlm_head is not None
        if "kl" in config.losses and not self.use_kl:
            self.notes.append("the teacher has no MLM head: the KL loss on its MLM logits is left out")
        if "attention" in config.losses:
            for name, refinee in self.refinees.items():
                if refinee.capture is None:
                    self.notes.append(f"{name} has no attention layer: its attention-relation loss is left out")
        if self.ctx.is_main:
            for note in self.notes:
                print(f"note: {note}")
        checkpoint = self._check_run_dir()
        torch.manual_seed(config.seed)
        spec = CorpusSpec(config.train_files, config.validation_files, config.validation_fraction,
                          config.text_column, config.seq_len, config.max_train_sequences)
        self.data = build_corpus(spec, self.teacher.tokenizer, config.seed)
        self.sampler = EpochSampler(len(self.data["train"]), config.batch_size, config.seed, self.ctx.rank,
                                    self.ctx.world_size)
        self.masker = Masker(self.teacher.tokenizer, config.mlm_probability, config.whole_word_mask,
                             seed=config.seed * 1000 + self.ctx.rank)
        device = self.ctx.device
        self.models, self.optimizers, self.schedulers = {}, {}, {}
        warmup, total = config.warmup_steps, config.steps
        for name, refinee in self.refinees.items():
            refinee.to(device).train()
            self.models[name] = (DistributedDataParallel(refinee, find_unused_parameters=True)
                                 if self.ctx.enabled else refinee)
            optimizer = torch.optim.AdamW(refinee.parameters(), lr=config.lr, weight_decay=config.weight_decay)
            self.optimizers[name] = optimizer
            self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda s: min((s + 1) / max(1, warmup), max(0.0, (total - s) / max(1, total - warmup))))
        last = self.teacher.encoder_layers[-1].attention.self
        self.teacher_capture = Capture({"q": last.query, "k": last.key, "v": last.value})
        if checkpoint is not None:
            self._load(checkpoint)
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "refine_config.json").write_text(json.dumps(asdict(config), indent=2))
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def _check_run_dir(self) -> Path | None:
        config_file = self.run_dir / "refine_config.json"
        if not config_file.exists():
            return None
        if not self.config.resume:
            raise UserError(f"{self.run_dir} already holds a refinement; pass --resume to continue it or choose "
                            f"another output")
        return newest_checkpoint(self.run_dir)

    @torch.no_grad()
    def teacher_forward(self, ids: torch.Tensor, labels: torch.Tensor) -> dict:
        out = self.teacher.model(input_ids=ids, output_hidden_states=True)
        result = {"block_states": [out.hidden_states[i] for i in self.teacher.boundaries[1:]]}
        if self.use_kl:
            result["mlm_logits"] = self.teacher.mlm_head(out.last_hidden_state[labels != -100])  # (M, V)
        config = self.teacher.config
        result["qkv"] = {**self.teacher_capture.outputs, "heads": config.num_attention_heads,
                         "head_dim": config.hidden_size // config.num_attention_heads}
        return result

    def _autocast(self):
        if self.ctx.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def train_step(self, step: int) -> dict[str, dict[str, float]]:
        _, rows = self.sampler.indices(step)
        ids, labels = self.masker.with_labels(self.data["train"][rows]["input_ids"])
        ids, labels = ids.to(self.ctx.device), labels.to(self.ctx.device)
        logged = {}
        with self._autocast():
            teacher_out = self.teacher_forward(ids, labels)
            for name in self.names:
                losses = self.models[name](ids, labels, teacher_out, self.config, self.use_kl)
                total = total_loss(losses)
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
        bar = tqdm(total=config.steps, initial=self.step, desc="refine", disable=not self.ctx.is_main,
                   dynamic_ncols=True)
        started = time.perf_counter()
        while self.step < config.steps:
            logged = self.train_step(self.step)
            self.step += 1
            if self.ctx.is_main:
                bar.update(1)
                bar.set_postfix({name: f"{v['total']:.3f}" for name, v in logged.items()})
                self._log(logged, time.perf_counter() - started)
            if self.step % config.save_every == 0 or self.step == config.steps:
                self.save_checkpoint()
        bar.close()

    def _log(self, logged: dict[str, dict[str, float]], elapsed: float) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as log:
            log.write(json.dumps({"step": self.step, "losses": logged, "elapsed_s": elapsed}) + "\n")
        for name, losses in logged.items():
            for key, value in losses.items():
                self.writer.add_scalar(f"{name}/{key}", value, self.step)

    def save_checkpoint(self) -> None:
        rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
               "masker": self.masker.state_dict()}
        rng_states = self.ctx.all_gather_object(rng)
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
        rng = objects[f"rng-rank{self.ctx.rank}"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        self.masker.load_state_dict(rng["masker"])
        self.step = state["step"]
        if self.ctx.is_main:
            print(f"resuming refinement from {checkpoint} (step {self.step})")

    def cleanup(self) -> None:
        if self.writer is not None:
            self.writer.close()


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
