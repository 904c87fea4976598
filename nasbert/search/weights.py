"""Per-block weights of the approximated loss, fitted to chained students (beyond NAS-BERT §3.3).

NAS-BERT ranks a student by the plain sum of its blocks' dev losses, each block fed the teacher's states.
Chained, a block's error also raises every later block's loss, and a later block's own differences shrink on
the student's (worse) inputs. On the fidelity benchmark's 3-block supernet the chained loss is 98 % additive
over the blocks, but its per-block effects spread 1.5x, 0.6x and 0.6x as wide as the block losses do; the plain
sum weighs the first block too little and the others too much.

So: draw S random students from the block table, re-check them chained (the loss search re-ranks by), and fit

    chained loss ~ b + sum_n w_n * block loss_n        (non-negative least squares, w_n >= 0)

The weighted sum is still a sum over blocks (each block's losses scaled by its w_n), so the exact top-K
search is unchanged. w = (1, ..., 1) is NAS-BERT's approximator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.optimize import nnls
from scipy.stats import kendalltau

from nasbert.search.recheck import recheck
from nasbert.search.topk import BlockTable
from nasbert.train_supernet.run import Run
from search_space import Arch, BlockArch


@dataclass
class BlockWeights:
    weights: list[float]  # w_n per block
    students: int  # chained students the weights were fitted on
    fit_tau: float  # Kendall tau between the weighted sum and the chained loss on those students
    plain_tau: float  # the same for the plain sum (NAS-BERT)

    def describe(self) -> str:
        terms = " + ".join(f"{w:.2f}*B{n + 1}" for n, w in enumerate(self.weights))
        return (f"approximated loss = {terms} (fitted on {self.students} chained students: Kendall tau "
                f"{self.fit_tau:.3f}, plain sum {self.plain_tau:.3f})")

    def to_json(self) -> dict:
        return asdict(self)


def fit_weights(block_losses: np.ndarray, chained: np.ndarray) -> np.ndarray:
    """Block losses (N, S) and chained losses (S,) of S students -> non-negative weights (N,).

    The intercept is fitted (by centring) and dropped: it does not change a ranking. A weight fitted to 0 is
    raised to 1 % of the largest, so that block's loss still breaks ties among students equal elsewhere. Where
    the fit gives nothing to rank by (all weights 0, e.g. chained losses that do not vary), the plain sum's ones
    are returned.
    """
    x = block_losses - block_losses.mean(axis=1, keepdims=True)
    y = chained - chained.mean()
    weights, _ = nnls(x.T, y)
    if weights.max() <= 0:
        return np.ones(len(block_losses))
    return np.maximum(weights, 0.01 * weights.max())


def fit_block_weights(run: Run, students: int = 200, batches: int = 4, batch_size: int = 32,
                      seed: int = 0) -> tuple[BlockWeights, dict[str, float]]:
    """Fit the weights on `students` random students of the block table (one surviving candidate per block,
    uniformly); also returns their chained losses by arch string, so a search need not re-check them again."""
    rng = np.random.default_rng(seed)
    blocks = run.block_table["blocks"]
    picks = [rng.integers(len(entries), size=students) for entries in blocks]  # (N, S) candidate indices
    archs = [Arch(tuple(BlockArch.parse(blocks[n][p[s]]["arch"]) for n, p in enumerate(picks)))
             for s in range(students)]
    losses = np.array([[blocks[n][i]["dev_loss"] for i in p] for n, p in enumerate(picks)])  # (N, S)
    rechecked = recheck(run, archs, batches, batch_size)
    chained = np.array([rechecked[str(a)] for a in archs])
    weights = fit_weights(losses, chained)
    result = BlockWeights([float(w) for w in weights], students, fit_tau=_tau(weights @ losses, chained),
                          plain_tau=_tau(losses.sum(axis=0), chained))
    return result, rechecked


def weighted(tables: Sequence[BlockTable], weights: Sequence[float]) -> list[BlockTable]:
    """The block tables with each block's losses scaled by its weight (what top-K then sums)."""
    return [replace(table, loss=table.loss * weight) for table, weight in zip(tables, weights)]


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    tau = kendalltau(a, b).statistic
    return 0.0 if np.isnan(tau) else float(tau)  # nan where either side is constant
