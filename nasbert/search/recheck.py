"""Re-check students as whole chained models: the loss search re-ranks its top-K by.

The super blocks are chained on their own outputs from the teacher's embeddings Y_0 and compared with the
teacher at every block boundary (MSE). This is the whole-model counterpart of the approximated loss, which
takes each block's loss on the teacher's inputs.
"""

from __future__ import annotations

import numpy as np
import torch

from nasbert.common.losses import masked_mse
from nasbert.common.progress import progress_bar
from nasbert.train_supernet.run import Run
from search_space import Arch


@torch.inference_mode()
def chained_losses(run: Run, arch: Arch, states: list[torch.Tensor]) -> list[float]:
    """The arch's super blocks chained on their own outputs from the teacher's embeddings Y_0; the MSE of the
    chain against the teacher at every block boundary: [MSE(h_1, Y_1), ..., MSE(h_N, Y_N)]."""
    hidden, losses = states[0], []
    for n, block in enumerate(arch):
        hidden = run.supernet.forward_block(n, hidden, block)
        losses.append(masked_mse(hidden, states[n + 1], None).item())
    return losses


@torch.inference_mode()
def boundary_losses(run: Run, archs: list[Arch], batches: int = 4, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Each arch's chained dev loss at every block boundary (N,), averaged over the dev batches."""
    ids = run.dev_ids[: batches * batch_size].to(run.device)
    states = [run.teacher.block_states(chunk) for chunk in ids.split(batch_size)]
    return {str(arch): np.mean([chained_losses(run, arch, s) for s in states], axis=0)
            for arch in progress_bar(archs, desc="re-checking", leave=False)}


def recheck(run: Run, archs: list[Arch], batches: int = 4, batch_size: int = 32,
            final_only: bool = False) -> dict[str, float]:
    """Chained dev loss of each arch: summed over the block boundaries, or at the output only."""
    return {arch: float(losses[-1] if final_only else losses.sum())
            for arch, losses in boundary_losses(run, archs, batches, batch_size).items()}
