"""Is the chained loss additive over blocks, and how do its per-block effects compare with the block losses?

    python bench/approximator_additivity.py --run bench_runs/fidelity/supernet [--per-block 8]

Picks `--per-block` K surviving candidates per block at random and chains all K^N students on the dev batches
(the chained loss search re-checks: MSE against the teacher at every block boundary, summed). Prints how much
of the chained loss an additive model (one main effect per block's candidate) explains, how well that model
ranks, the plain sum of block losses' ranking, and per block the main effect's spread against the block
loss's spread: the ratio is the weight the block should get (nasbert.search.weights fits these weights).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from scipy.stats import kendalltau

from nasbert.common.losses import masked_mse
from nasbert.train_supernet.run import load_run
from nasbert.train_supernet.scoring import BlockScorer
from search_space import BlockArch


@torch.inference_mode()
def chained_grid(run, picks: list[list[BlockArch]], states: list[torch.Tensor]) -> np.ndarray:
    """Chained loss of every combination of the picks, shape (K,) * N; prefixes are computed once."""
    run.supernet.eval()
    shape = tuple(len(p) for p in picks)
    losses = np.zeros(shape)

    def walk(n: int, hidden: torch.Tensor, index: tuple[int, ...], so_far: float) -> None:
        if n == len(picks):
            losses[index] = so_far
            return
        for i, block in enumerate(picks[n]):
            out = run.supernet.forward_block(n, hidden, block)  # (S, T, H)
            walk(n + 1, out, (*index, i), so_far + masked_mse(out, states[n + 1], None).item())

    walk(0, states[0], (), 0.0)
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained supernet run")
    parser.add_argument("--per-block", type=int, default=8)
    parser.add_argument("--sequences", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run = load_run(args.run)
    rng = np.random.default_rng(args.seed)
    survivors = [[BlockArch.parse(e["arch"]) for e in entries] for entries in run.block_table["blocks"]]
    picks = [[block[i] for i in rng.choice(len(block), min(args.per_block, len(block)), replace=False)]
             for block in survivors]
    if any(len(p) < 2 for p in picks):
        sys.exit("error: every block needs two or more surviving candidates")
    scorer = BlockScorer.from_teacher(run.supernet, run.teacher, run.dev_ids[: args.sequences])
    block_losses = [scorer.score(n, p) for n, p in enumerate(picks)]  # N arrays (K,)
    chained = chained_grid(run, picks, scorer.states)
    n_blocks = len(picks)
    axes = range(n_blocks)
    mean = chained.mean()
    effects = [chained.mean(axis=tuple(a for a in axes if a != n)) - mean for n in axes]  # N arrays (K,)
    additive = mean + sum(e.reshape([-1 if a == n else 1 for a in axes]) for n, e in enumerate(effects))
    plain = sum(b.reshape([-1 if a == n else 1 for a in axes]) for n, b in enumerate(block_losses))
    explained = 1 - ((chained - additive) ** 2).sum() / ((chained - mean) ** 2).sum()
    print(f"run {args.run}: {' x '.join(str(len(p)) for p in picks)} = {chained.size} chained students, "
          f"{args.sequences} dev sequences")
    print(f"additive model over blocks: R^2 {explained:.4f}, Kendall tau vs chained "
          f"{kendalltau(additive.ravel(), chained.ravel()).statistic:.3f}; plain sum of block losses: tau "
          f"{kendalltau(plain.ravel(), chained.ravel()).statistic:.3f}")
    for n, (effect, loss) in enumerate(zip(effects, block_losses)):
        slope = np.polyfit(loss, effect, 1)[0]
        print(f"block {n + 1}: main effect spread {np.ptp(effect):.4f}, block loss spread {np.ptp(loss):.4f}, "
              f"correlation {np.corrcoef(effect, loss)[0, 1]:.3f}, slope (the block's weight) {slope:.2f}")


if __name__ == "__main__":
    main()
