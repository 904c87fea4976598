"""Plumbing every training recipe shares (supernet training, refinement): the LR schedule, autocast, RNG
capture/restore for exact resumes, the run-folder checks, and metrics to tensorboard + metrics.jsonl.

In the spirit of torchtune's `training/` package (lr_schedulers, seed, metric_logging), which its recipes call
instead of rewriting.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasbert.common.checkpoint import newest_checkpoint
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
        if refuse_foreign and run_dir.exists() and any(p.name != "tensorboard" for p in run_dir.iterdir()):
            raise UserError(f"{run_dir} exists and is not a nasbert run; choose an empty or new {output}")
        return None
    if not resume:
        raise UserError(f"{run_dir} already holds {holds}; pass --resume to continue it or choose another {output}")
    if same_settings is not None:
        same_settings(config_file)
    return newest_checkpoint(run_dir)


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
