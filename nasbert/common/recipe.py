"""Plumbing every training recipe shares (supernet training, refinement): the LR schedule, autocast, RNG
capture/restore for exact resumes, the run-folder checks and lock, and metrics to tensorboard + metrics.jsonl.

In the spirit of torchtune's `training/` package (lr_schedulers, seed, metric_logging), which its recipes call
instead of rewriting.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasbert.common.checkpoint import newest_checkpoint
from nasbert.common.lock import LOCK_FILE, folder_lock, other_entries
from nasbert.errors import UserError


def warmup_linear(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup` steps to the optimizer's LR, then linear decay to 0 at step `total`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / max(1, warmup), max(0.0, (total - s) / max(1, total - warmup))))


def autocast(device: torch.device) -> AbstractContextManager:
    """bf16 autocast on CUDA; on every other device nothing (float32, as without it)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def capture_rng(device: torch.device, masker: Any = None) -> dict:
    """Every random state a resumed run needs to continue exactly: torch, numpy, python, CUDA, and a masker's."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "masker": masker.state_dict() if masker is not None else None,
            "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}


def restore_rng(state: dict, masker: Any = None) -> None:
    """Put back what `capture_rng` took (states from before CUDA was recorded have no "cuda" key)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if masker is not None and state.get("masker"):
        masker.load_state_dict(state["masker"])
    if state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"])


def check_run_dir(run_dir: Path, marker: str, resume: bool, *, holds: str = "a run", output: str = "--output",
                  refuse_foreign: bool = False, same_settings: Callable[[Path], None] | None = None) -> Path | None:
    """The checkpoint to resume from, or None for a fresh run; refuses to overwrite anything.

    A folder with `marker` (the run's config file) holds a run: refused without `resume`, else `same_settings`
    (if given) may refuse a changed config. With `refuse_foreign`, any other non-empty folder is refused too
    (a lone tensorboard/ is tolerated: a writer may have opened it before a failed start).
    """
    config_file = run_dir / marker
    if not config_file.exists():
        if refuse_foreign and any(p.name != "tensorboard" for p in other_entries(run_dir)):
            raise UserError(f"{run_dir} exists and is not a nasbert run; choose an empty or new {output}")
        return None
    if not resume:
        raise UserError(f"{run_dir} already holds {holds}; pass --resume to continue it or choose another {output}")
    if same_settings is not None:
        same_settings(config_file)
    return newest_checkpoint(run_dir)


@dataclass
class HeldFolder:
    """A folder this process holds (see `hold_folder`); set `discard` to remove it on release if it made it."""

    path: Path
    created: bool  # this process made the folder (it did not exist, or held only a dead job's lock file)
    discard: bool = False


@contextlib.contextmanager
def hold_folder(folder: str | Path, what: str, *, enabled: bool = True) -> Iterator[HeldFolder]:
    """One writer per folder: hold `folder` (made if missing) with `folder_lock` while the block runs.

    Another live holder is refused with a UserError naming it, before anything is written. On the way out a
    folder this process made (or a dead job made: it holds only that job's lock file) is removed if nothing was
    written to it, or entirely if `discard` was set (a run that never started); any other folder is kept.
    `enabled=False`: a no-op (DDP ranks other than 0).
    """
    folder = Path(folder)
    created = enabled and (not folder.exists() or (folder.is_dir() and os.listdir(folder) == [LOCK_FILE]))
    acquired = False
    try:
        with folder_lock(folder, what, enabled):
            acquired = True
            created = created and not other_entries(folder)  # a holder that just finished may have written it
            held = HeldFolder(folder, created)
            try:
                yield held
            finally:
                if held.discard and created:  # under the lock: no other writer can have started in it
                    for entry in other_entries(folder):
                        if entry.is_dir() and not entry.is_symlink():
                            shutil.rmtree(entry, ignore_errors=True)
                        else:
                            entry.unlink(missing_ok=True)
    finally:
        if acquired and created:
            with contextlib.suppress(OSError):  # not empty: kept
                folder.rmdir()


def hold_job_folder(stack: contextlib.ExitStack, ctx: Any, folder: Path, what: str) -> HeldFolder | None:
    """`hold_folder` for a job of one or more ranks, entered on `stack` (closed by the recipe's cleanup): rank 0
    holds the folder, and a refusal reaches every rank as the same UserError, so none goes on alone."""
    held, refusal = None, None
    if ctx.is_main:
        try:
            held = stack.enter_context(hold_folder(folder, what))
        except UserError as error:
            refusal = str(error)
    refusal = ctx.broadcast_object(refusal)
    if refusal is not None:
        raise UserError(refusal)
    return held


def refuse_changed_settings(config_file: Path, section: str, current: Mapping[str, Any],
                            may_change: Collection[str]) -> None:
    """A resumed run must keep its settings: compare config_file[section] with `current`, except `may_change`."""
    try:
        saved = json.loads(config_file.read_text())[section]
    except (json.JSONDecodeError, KeyError):
        raise UserError(f"{config_file} is corrupt; choose another --output") from None
    for key, value in saved.items():
        if key not in may_change and current.get(key) != value:
            raise UserError(f"--resume with {key}={current.get(key)!r} but the run in {config_file.parent} used "
                            f"{value!r}; resume with the same settings")


class MetricsLog:
    """One call per record: a line {"step": step, **record} in RUN/metrics.jsonl and a tensorboard scalar per
    entry of `scalars` (tag -> value). Open it on the process that writes (rank 0)."""

    def __init__(self, run_dir: Path, writer: Any = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = writer

    @classmethod
    def open(cls, run_dir: Path) -> MetricsLog:
        """A log whose scalars go to RUN/tensorboard."""
        from torch.utils.tensorboard import SummaryWriter

        return cls(run_dir, SummaryWriter(str(Path(run_dir) / "tensorboard")))

    def log(self, step: int, scalars: Mapping[str, float] | None = None, **record: Any) -> None:
        if record:
            with open(self.path, "a") as log:
                log.write(json.dumps({"step": step, **record}) + "\n")
        if self.writer is not None:
            for tag, value in (scalars or {}).items():
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
