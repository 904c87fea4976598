"""Stage 1, train-supernet: block-wise distillation of the weight-sharing supernet from a frozen teacher.

    nasbert train-supernet --teacher DIR --train-file corpus.txt --output runs/sn --max-steps 2000
    torchrun --nproc-per-node=2 -m nasbert train-supernet ...   # DDP: gloo on CPU, NCCL on CUDA

Every step: one teacher forward gives the block-boundary states Y_0..Y_N; one uniform random path per
block (seeded by the step, so identical on every rank); super block n reads Y_{n-1} and is trained to
predict Y_n (MSE on real tokens). All blocks train in the same step. Rank 0 logs, writes and shows progress.

Rank 0 holds the run folder for the whole job (a second job on it is refused, naming the holder). Ctrl-C or
SIGTERM stops after the current step with a checkpoint, prints the command that resumes, and exits 130 / 143.
The recipe is one class (setup / train / shrink / eval / checkpoints), as a torchtune recipe is: ~400 lines.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack, nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nasbert.common.checkpoint import load_checkpoint, save_checkpoint
from nasbert.common.data import EpochSampler, build_corpus
from nasbert.common.distributed import DistributedContext, cleanup_distributed, init_distributed
from nasbert.common.losses import masked_mse
from nasbert.common.masking import Masker
from nasbert.common.progress import progress_bar
from nasbert.common.recipe import (
    HeldFolder,
    MetricsLog,
    autocast,
    capture_rng,
    check_run_dir,
    hold_job_folder,
    refuse_changed_settings,
    restore_rng,
    warmup_linear,
)
from nasbert.common.signals import Interrupted, StopSignals, resume_command
from nasbert.common.teacher import check_seq_len, load_teacher, teacher_space
from nasbert.errors import UserError
from nasbert.train_supernet.config import RESUMABLE_CHANGES, TrainConfig
from nasbert.train_supernet.etd import importance_order, init_supernet_from_teacher, random_order
from nasbert.train_supernet.scoring import BlockScorer
from nasbert.train_supernet.shrink import ProgressiveShrinker, ShrinkConfig, block_latency_function
from search_space import Arch, SearchSpace
from supernet import Supernet


class BlockwiseDistiller(nn.Module):
    """Wraps the supernet so DDP sees one forward: per-block losses (N,) for one path."""

    def __init__(self, supernet: Supernet):
        super().__init__()
        self.supernet = supernet

    def forward(self, states: list[torch.Tensor], arch: Arch, attention_mask: torch.Tensor | None,
                chained: bool = False) -> torch.Tensor:
        """states: the teacher's N+1 boundary states (B, T, H). chained: block n >= 1 gets block n-1's output,
        detached (each block still learns only from its own loss), instead of the teacher's state."""
        losses, previous = [], None
        for n, block in enumerate(arch):
            inputs = previous.detach() if chained and previous is not None else states[n]
            previous = self.supernet.forward_block(n, inputs, block, attention_mask)
            losses.append(masked_mse(previous, states[n + 1], attention_mask))
        return torch.stack(losses)


def path_for_step(space: SearchSpace, seed: int, step: int) -> Arch:
    """The path of a step: a function of (seed, step) only, so every rank and every resume agree."""
    return space.sample(np.random.default_rng([seed, step]))


def chained_for_step(share: float, seed: int, step: int) -> bool:
    """Whether a step feeds blocks their student upstream (see TrainConfig.chained_inputs); a function of
    (seed, step) only, like the path."""
    return share > 0 and np.random.default_rng([seed, step, 1]).random() < share


class SupernetRecipe:
    """setup / train / save_checkpoint / cleanup, in the torchtune spirit."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.run_dir = Path(config.output)
        self.step = 0
        self.metrics: MetricsLog | None = None
        self.folder: HeldFolder | None = None  # the run folder, held by rank 0 from setup to cleanup
        self._held = ExitStack()
        self.path_sampler = lambda step: path_for_step(self.space, self.config.seed, step)

    # ---- setup ------------------------------------------------------------------------------------------

    def setup(self) -> None:
        config = self.config
        if not config.output:
            raise UserError("pass --output, the run folder")
        if not config.teacher:
            raise UserError("pass --teacher, a model folder or hub name")
        self.ctx: DistributedContext = init_distributed(config.device)
        self.folder = hold_job_folder(self._held, self.ctx, self.run_dir, "train-supernet")  # before any write
        checkpoint = check_run_dir(
            self.run_dir, "config.json", config.resume, refuse_foreign=True,
            same_settings=lambda file: refuse_changed_settings(file, "train", asdict(config), RESUMABLE_CHANGES))
        torch.manual_seed(config.seed)
        self.teacher = load_teacher(config.teacher, config.num_blocks, self.ctx.device,
                                    trust_remote_code=config.trust_remote_code)
        check_seq_len(self.teacher, config.seq_len)
        self.space = teacher_space(self.teacher, tuple(config.widths) if config.widths else None)
        corpus = config.corpus_spec()
        # Rank 0 tokenises first so the others read its cache.
        if not self.ctx.is_main:
            self.ctx.barrier()
        self.data = build_corpus(corpus, self.teacher.tokenizer, config.seed)
        if self.ctx.is_main:
            self.ctx.barrier()
        self.sampler = EpochSampler(len(self.data["train"]), config.batch_size, config.seed, self.ctx.rank,
                                    self.ctx.world_size)
        per_rank = config.batch_size // self.ctx.world_size
        if per_rank % config.grad_accum:
            raise UserError(f"the per-process batch {per_rank} does not split into {config.grad_accum} "
                            f"accumulation steps")
        self.total_steps = config.max_steps or max(1, int(config.epochs * self.sampler.batches_per_epoch))
        self.masker = (Masker(self.teacher.tokenizer, config.mlm_probability, config.whole_word_mask,
                              seed=config.seed * 1000 + self.ctx.rank) if config.mlm_probability > 0 else None)

        self.shrinker = self._make_shrinker() if config.shrink else None
        if self.shrinker is not None:
            self.path_sampler = lambda step: self.shrinker.sample_path(np.random.default_rng([config.seed, step]))
        self.scorer = None
        self.supernet = Supernet(self.space).to(self.ctx.device)
        if config.init != "random" and checkpoint is None:
            self._etd_init()
        self.distiller = BlockwiseDistiller(self.supernet)
        self.model = (DistributedDataParallel(self.distiller, find_unused_parameters=True)
                      if self.ctx.enabled else self.distiller)
        self.optimizer = torch.optim.AdamW(self.supernet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = warmup_linear(self.optimizer, config.warmup_steps, self.total_steps)
        if checkpoint is not None:
            self._load(checkpoint)
        elif self.ctx.is_main:
            self._write_config()
        if self.ctx.is_main:
            self.metrics = MetricsLog.open(self.run_dir)

    def _make_shrinker(self) -> ProgressiveShrinker:
        config = self.config
        shrink = ShrinkConfig(bins=config.shrink_bins, candidates=config.shrink_candidates, keep=config.shrink_keep,
                              warmup_steps=config.shrink_warmup_steps, every_steps=config.shrink_every,
                              dev_batches=config.shrink_dev_batches)
        latency_fn = block_latency_function(config.latency_table, self.space) if config.latency_table else None
        return ProgressiveShrinker(self.space, shrink, latency_fn)

    def _write_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        teacher_config = self.teacher.config
        payload = {"train": asdict(self.config), "space": self.space.to_json(),
                   "teacher": {"name": self.teacher.name, "num_hidden_layers": teacher_config.num_hidden_layers,
                               "hidden_size": teacher_config.hidden_size,
                               "num_attention_heads": teacher_config.num_attention_heads},
                   "world_size": self.ctx.world_size}
        tmp = self.run_dir / "config.json.tmp"
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.rename(self.run_dir / "config.json")

    def _etd_init(self) -> None:
        if self.config.init == "etd-rand":
            order = random_order(self.teacher, self.config.seed)
        else:
            rows = min(len(self.data["train"]), self.config.importance_batches * 8)
            ids = self.data["train"][:rows]["input_ids"].to(self.ctx.device)
            order = importance_order(self.teacher, list(ids.split(8)), self.teacher.tokenizer.mask_token_id,
                                     self.config.seed)
        init_supernet_from_teacher(self.supernet, self.teacher, order)

    # ---- training ---------------------------------------------------------------------------------------

    def _batch(self, step: int) -> torch.Tensor:
        _, rows = self.sampler.indices(step)
        return self.data["train"][rows]["input_ids"]

    def train_step(self, step: int) -> tuple[torch.Tensor, Arch]:
        """One optimizer step; returns the per-block losses (N,) averaged over accumulation, and the path."""
        arch = self.path_sampler(step)
        chained = chained_for_step(self.config.chained_inputs, self.config.seed, step)
        micro_batches = self._batch(step).split(self.config.batch_size // self.ctx.world_size // self.config.grad_accum)
        total = torch.zeros(self.space.num_blocks)
        for i, ids in enumerate(micro_batches):
            ids = ids.to(self.ctx.device)
            if self.masker is not None:
                ids = self.masker(ids.cpu()).to(self.ctx.device)
            with autocast(self.ctx.device):
                states = self.teacher.block_states(ids)
                sync = i == len(micro_batches) - 1 or not self.ctx.enabled
                context = self.model.no_sync() if not sync else nullcontext()
                with context:
                    losses = self.model(states, arch, None, chained)
                    (losses.sum() / len(micro_batches)).backward()
            total += losses.detach().float().cpu() / len(micro_batches)
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, arch

    def train(self) -> None:
        config = self.config
        bar = progress_bar(total=self.total_steps, initial=self.step, desc="train-supernet",
                           disable=not self.ctx.is_main, dynamic_ncols=True)
        tokens_per_step = config.batch_size * config.seq_len
        started, window_steps = time.perf_counter(), 0
        with StopSignals() as stop:  # Ctrl-C / SIGTERM: finish the step, save, exit 130 / 143
            while self.step < self.total_steps:
                losses, arch = self.train_step(self.step)
                self.step += 1
                if self.ctx.enabled and self.step % config.log_every == 0:
                    self._check_same_path(arch)
                window_steps += 1
                if self.ctx.is_main:
                    bar.set_postfix(loss=f"{losses.sum().item():.4f}")
                    bar.update(1)
                    elapsed = time.perf_counter() - started
                    tokens_per_s = window_steps * tokens_per_step / max(elapsed, 1e-9)
                    self._log_train(losses, tokens_per_s)
                    if self.step % config.log_every == 0:
                        started, window_steps = time.perf_counter(), 0
                if self.shrinker is not None and self.shrinker.due(self.step):
                    self.shrink()
                if self.step % config.eval_every == 0 or self.step == self.total_steps:
                    self.log_dev(self.evaluate())
                stopping = stop.requested(self.ctx)  # every rank, the same answer
                if stopping or self.step % config.save_every == 0 or self.step == self.total_steps:
                    self.save_checkpoint()
                if stopping:
                    bar.close()
                    resume = resume_command("train-supernet", ["--config", str(self.run_dir / "config.json")])
                    raise stop.interrupted(f"checkpoint {self.run_dir / 'checkpoints' / f'step-{self.step}'}; "
                                           f"resume with: {resume}")
        bar.close()
        self.write_block_table()

    # ---- shrinking and the block-loss table ------------------------------------------------------------------

    def block_scorer(self) -> BlockScorer:
        """Scores on the first dev batches; the teacher's states for them are computed once."""
        if self.scorer is None:
            batch = max(1, self.config.batch_size // self.ctx.world_size // self.config.grad_accum)
            dev = self.data["validation"]
            rows = min(len(dev), self.config.shrink_dev_batches * batch)
            ids = dev[:rows]["input_ids"].to(self.ctx.device)
            self.scorer = BlockScorer.from_teacher(self.supernet, self.teacher, ids, batch)
        return self.scorer

    def shrink(self) -> None:
        """Rank 0 scores and prunes; every rank takes its result, so all sample from the same survivors."""
        state = None
        if self.ctx.is_main:
            self.shrinker.shrink(self.block_scorer(), np.random.default_rng([self.config.seed, self.step, 7]))
            state = self.shrinker.state_dict()
        state = self.ctx.broadcast_object(state)
        self.shrinker.load_state_dict(state)
        if self.ctx.is_main:
            counts, speed = self.shrinker.counts(), self.scorer.candidates_per_second
            scalars = {f"shrink/block{n + 1}_bin{b + 1}": count for n, row in enumerate(counts)
                       for b, count in enumerate(row)}
            scalars |= {f"shrink/block{n + 1}_left": sum(row) for n, row in enumerate(counts)}
            self.metrics.log(self.step, scalars | {"shrink/candidates_per_s": speed}, shrink_counts=counts,
                             candidates_per_s=speed)

    def write_block_table(self) -> None:
        """block_losses.json: per block, the survivors (or a seeded sample) with params, FLOPs and dev loss."""
        if not self.ctx.is_main:
            return
        rng = np.random.default_rng([self.config.seed, 424_242])
        blocks = []
        for n in range(self.space.num_blocks):
            if self.shrinker is not None:
                candidates = [self.shrinker.candidates[i] for i in self.shrinker.block_survivors(n)]
            else:
                candidates = sorted({self.space.sample_block(rng) for _ in range(self.config.candidates_per_block)})
            losses = self.block_scorer().score(n, candidates)
            blocks.append([{"arch": str(c), "params": self.space.block_params(c), "flops": self.space.block_flops(c),
                            "dev_loss": float(loss)} for c, loss in zip(candidates, losses)])
        table = {"step": self.step, "space": self.space.to_json(), "shrunk": self.shrinker is not None,
                 "scored_sequences": int(self.scorer.states[0].shape[0]),
                 "candidates_per_s": self.scorer.candidates_per_second, "blocks": blocks}
        tmp = self.run_dir / "block_losses.json.tmp"
        tmp.write_text(json.dumps(table, indent=1))
        tmp.rename(self.run_dir / "block_losses.json")

    def _check_same_path(self, arch: Arch) -> None:
        """Every rank must train the same path; a mismatch would silently average unrelated gradients."""
        paths = self.ctx.all_gather_object(str(arch))
        if len(set(paths)) > 1:
            raise RuntimeError(f"ranks sampled different paths at step {self.step}: {paths}")
        if self.ctx.is_main:
            self.metrics.log(self.step, paths_by_rank=paths)

    def _log_train(self, losses: torch.Tensor, tokens_per_s: float) -> None:
        lr = self.scheduler.get_last_lr()[0]
        scalars = {f"train/loss_block{n + 1}": loss for n, loss in enumerate(losses.tolist())}
        scalars |= {"train/loss_sum": losses.sum().item(), "train/lr": lr, "train/tokens_per_s": tokens_per_s}
        self.metrics.log(self.step, scalars, train_loss_block=losses.tolist(), lr=lr, tokens_per_s=tokens_per_s)

    # ---- evaluation ---------------------------------------------------------------------------------------

    def eval_paths(self) -> dict[str, Arch]:
        """Fixed paths: the teacher-shaped one (M,F,... at the largest width) and a few seeded random ones."""
        paths = {"teacher_shaped": self.space.largest_arch()}
        rng = np.random.default_rng([self.config.seed, 999_983])
        for i in range(self.config.eval_paths):
            paths[f"random{i}"] = self.space.sample(rng)
        return paths

    @torch.no_grad()
    def evaluate(self, paths: dict[str, Arch] | None = None) -> dict[str, list[float]]:
        """Dev loss per block for each path: {path name: [loss of block 1, ..., block N]}."""
        paths = paths or self.eval_paths()
        dev = self.data["validation"]
        batch = max(1, self.config.batch_size // self.ctx.world_size // self.config.grad_accum)
        totals = {name: torch.zeros(self.space.num_blocks) for name in paths}
        count = 0
        self.supernet.eval()
        for start in range(0, min(len(dev), self.config.eval_batches * batch), batch):
            ids = dev[start: start + batch]["input_ids"].to(self.ctx.device)
            with autocast(self.ctx.device):
                states = self.teacher.block_states(ids)
                for name, arch in paths.items():
                    totals[name] += self.distiller(states, arch, None).float().cpu()
            count += 1
        self.supernet.train()
        return {name: (total / max(count, 1)).tolist() for name, total in totals.items()}

    def log_dev(self, dev: dict[str, list[float]]) -> None:
        if not self.ctx.is_main:
            return
        mean = np.mean([losses for losses in dev.values()], axis=0)
        scalars = {f"dev/loss_block{n + 1}": float(loss) for n, loss in enumerate(mean)}
        scalars |= {f"dev/teacher_shaped_block{n + 1}": loss for n, loss in enumerate(dev["teacher_shaped"])}
        self.metrics.log(self.step, scalars, dev_loss_block=mean.tolist(), dev=dev)

    # ---- checkpoints ------------------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        rng_states = self.ctx.all_gather_object(capture_rng(self.ctx.device, self.masker))
        if self.ctx.is_main:
            objects = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
            objects.update({f"rng-rank{r}": state for r, state in enumerate(rng_states)})
            state = {"step": self.step, "data_position": self.step, "world_size": self.ctx.world_size,
                     "epoch": self.step / self.sampler.batches_per_epoch, **self.extra_state()}
            save_checkpoint(self.run_dir, self.step, self.supernet.state_dict(), objects, state,
                            self.config.keep_checkpoints)
        self.ctx.barrier()

    def extra_state(self) -> dict:
        """Further state for checkpoints: the shrinker's survivors."""
        return {"shrink": self.shrinker.state_dict()} if self.shrinker is not None else {}

    def load_extra_state(self, state: dict) -> None:
        if self.shrinker is not None and state.get("shrink"):
            self.shrinker.load_state_dict(state["shrink"])

    def _load(self, checkpoint: Path) -> None:
        names = ["optimizer", "scheduler", f"rng-rank{self.ctx.rank}"]
        model_state, objects, state = load_checkpoint(checkpoint, names)
        if state.get("world_size", 1) != self.ctx.world_size:
            raise UserError(f"checkpoint {checkpoint} was written by {state.get('world_size')} processes; resume "
                            f"with the same number")
        try:
            self.supernet.load_state_dict(model_state)
            self.optimizer.load_state_dict(objects["optimizer"])
            self.scheduler.load_state_dict(objects["scheduler"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise UserError(f"checkpoint {checkpoint} does not fit this run ({str(error).splitlines()[0]})") from None
        restore_rng(objects[f"rng-rank{self.ctx.rank}"], self.masker)
        self.step = state["step"]
        self.load_extra_state(state)
        if self.ctx.is_main:
            print(f"resuming from {checkpoint} (step {self.step})")

    def cleanup(self, completed: bool = True) -> None:
        """Close the logs, let go of the run folder, leave the process group."""
        if self.metrics is not None:
            self.metrics.close()
        self._held.close()
        cleanup_distributed(completed)


def train_supernet(config: TrainConfig) -> Path:
    """Run (or resume) a supernet training; returns the run folder."""
    recipe = SupernetRecipe(config)
    completed = False
    try:
        recipe.setup()
        recipe.train()
        completed = True
    except UserError:
        if recipe.folder is not None and not config.resume:  # a run that never started leaves no folder it made
            recipe.folder.discard = True
        raise
    except Interrupted:
        completed = True  # every rank stopped at the same step and saved: leave the group in step
        raise
    finally:
        recipe.cleanup(completed)
    return recipe.run_dir
