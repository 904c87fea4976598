"""Interrupts: Ctrl-C (SIGINT) and SIGTERM stop a long stage between two steps, after a final checkpoint.

    with StopSignals() as stop:
        while step < total:
            train_step(); step += 1
            if stop.requested(ctx):            # every rank gets the same answer (see below)
                save_checkpoint()
                raise stop.interrupted(where)   # Interrupted: exits 128 + the signal (130, 143)

The handler only records the signal; the loop checks it between steps, so a checkpoint is never written from
inside a handler, and a step is never cut in half. A repeated signal changes nothing (torchrun forwards the
terminal's Ctrl-C to workers that already had it); SIGKILL still stops at once and loses at most the steps
since the last checkpoint.

Under DDP the ranks may get the signal at different steps, so `requested` all-reduces the recorded signal (max)
every step: one 1-element collective, negligible beside the gradients' all-reduce. All ranks stop after the
same step, write the checkpoint together and exit with the same code.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(SystemExit):
    """A stage stopped by a signal after saving what it had: exits with 128 + the signal, like a shell reports it."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


class StopSignals:
    """While active (a context manager, main thread only), SIGINT/SIGTERM set a flag instead of stopping."""

    def __init__(self) -> None:
        self.signum = 0  # the first signal received, 0 for none
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:
            return
        self.signum = signum
        if os.environ.get("RANK", "0") == "0":  # os.write: print() may be mid-write in the interrupted code
            os.write(2, f"\n{signal.Signals(signum).name}: stopping after this step to save a checkpoint\n".encode())

    def requested(self, ctx: Any = None) -> bool:
        """Whether to stop now; with a DistributedContext of several ranks, whether any rank was signalled."""
        if ctx is not None and ctx.enabled:
            import torch
            import torch.distributed as dist

            flag = torch.tensor([self.signum], device=ctx.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.signum = int(flag.item())
        return self.signum != 0

    def interrupted(self, message: str) -> Interrupted:
        """The exception that ends the stage; prints `message` (where to resume) on rank 0 first."""
        if os.environ.get("RANK", "0") == "0":
            print(f"interrupted by {signal.Signals(self.signum).name}: {message}", file=sys.stderr, flush=True)
        return Interrupted(self.signum)


def resume_command(subcommand: str, fallback: list[str] | None = None) -> str:
    """The command line that continues this job: this process's own `nasbert SUBCOMMAND ...` with `--resume`
    (under `torchrun` when it runs under one), or `nasbert SUBCOMMAND *fallback --resume` when it was started
    some other way (from Python, from `nasbert quickstart`); without a fallback, a phrase saying so."""
    argv = sys.argv
    program = Path(argv[0]) if argv else Path()
    ours = program.name == "nasbert" or (program.name == "__main__.py" and program.parent.name == "nasbert")
    if ours and len(argv) > 1 and argv[1] == subcommand:
        args = argv[1:]
    elif fallback is not None:
        args = [subcommand, *fallback]
    else:
        return f"the same `nasbert {subcommand}` command with --resume"
    if "--resume" not in args:
        args = [*args, "--resume"]
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    prefix = ["torchrun", f"--nproc-per-node={world_size}", "-m", "nasbert"] if world_size > 1 else ["nasbert"]
    return shlex.join(prefix + args)
