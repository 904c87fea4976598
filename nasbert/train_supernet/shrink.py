"""Progressive shrinking of each block's candidates (NAS-BERT §3.2.2).

Per block, the candidates go into B bins by parameters: bin b holds (b-1)/B * p_max < p <= b/B * p_max, and a
candidate whose latency does not fall in the same bin of latency (l_max scaled likewise) is deleted, so no
survivor is small but slow. After a warm-up, at every shrink point each bin samples E candidates (all if
fewer), scores them on a few dev batches and drops the worse half of those, until m remain per bin.
Training samples paths only from the survivors.

Latency per candidate comes from a latency table (sum of its layers' entries) when one is given, else from
FLOPs as a proxy. Candidates are identified by their index in `space.block_candidates()` order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from nasbert.latency.lut import LatencyTable
from nasbert.train_supernet.scoring import BlockScorer
from search_space import Arch, BlockArch, SearchSpace


@dataclass
class ShrinkConfig:
    bins: int = 10  # B
    candidates: int = 2000  # E, sampled per bin at each shrink point
    keep: int = 10  # m, survivors per bin at the end
    warmup_steps: int = 1000
    every_steps: int = 1000  # steps between shrink points (NAS-BERT: one epoch)
    dev_batches: int = 5


def block_latency_function(lut_path: str, space: SearchSpace) -> Callable[[BlockArch], float]:
    """Latency of a block's layers (ms) from a latency table, priced as `LatencyTable.block_ms` prices them (its
    calibration's factors and per-layer term where it has one)."""
    table = LatencyTable.load(lut_path)
    table.check_space(space)
    return table.block_ms


def assign_bins(params: np.ndarray, latency: np.ndarray, bins: int) -> np.ndarray:
    """Bin index 0..B-1 of each candidate by params; -1 where its latency falls in another bin."""
    def bin_of(values: np.ndarray) -> np.ndarray:
        return np.clip(np.ceil(values / values.max() * bins).astype(int) - 1, 0, bins - 1)

    by_params, by_latency = bin_of(params), bin_of(latency)
    return np.where(by_params == by_latency, by_params, -1)


class ProgressiveShrinker:
    """The surviving candidates of every block, by bin, and the shrink step that prunes them."""

    def __init__(self, space: SearchSpace, config: ShrinkConfig,
                 block_latency_ms: Callable[[BlockArch], float] | None = None):
        self.space, self.config = space, config
        self.candidates: list[BlockArch] = list(space.block_candidates())
        params = np.array([space.block_params(c) for c in self.candidates], dtype=np.float64)
        latency_fn = block_latency_ms or (lambda c: float(space.block_flops(c)))
        latency = np.array([latency_fn(c) for c in self.candidates], dtype=np.float64)
        self.params, self.latency = params, latency
        bins = assign_bins(params, latency, config.bins)
        self.survivors: list[list[np.ndarray]] = [
            [np.flatnonzero(bins == b) for b in range(config.bins)] for _ in range(space.num_blocks)]
        self.shrinks_done = 0

    # ---- queries ------------------------------------------------------------------------------------------

    def block_survivors(self, n: int) -> np.ndarray:
        return np.concatenate(self.survivors[n])

    def counts(self) -> list[list[int]]:
        """Candidates left per block and bin."""
        return [[len(b) for b in block] for block in self.survivors]

    @property
    def finished(self) -> bool:
        return all(len(b) <= self.config.keep for block in self.survivors for b in block)

    def due(self, step: int) -> bool:
        """Whether `step` (1-based, after the update) is a shrink point."""
        c = self.config
        return not self.finished and step >= c.warmup_steps and (step - c.warmup_steps) % c.every_steps == 0

    def sample_path(self, rng: np.random.Generator) -> Arch:
        """One path: each block uniform over its survivors."""
        blocks = []
        for n in range(self.space.num_blocks):
            alive = self.block_survivors(n)
            blocks.append(self.candidates[int(alive[rng.integers(len(alive))])])
        return Arch(tuple(blocks))

    # ---- the shrink step --------------------------------------------------------------------------------

    def shrink(self, scorer: BlockScorer, rng: np.random.Generator) -> None:
        """Every bin of every block: score E sampled candidates (all if fewer), drop the worse half, keep >= m."""
        c = self.config
        for n in range(self.space.num_blocks):
            sampled_per_bin = []
            for alive in self.survivors[n]:
                if len(alive) <= c.keep:
                    sampled_per_bin.append(np.array([], dtype=int))
                    continue
                take = min(c.candidates, len(alive))
                sampled_per_bin.append(np.sort(rng.choice(alive, size=take, replace=False)))
            flat = np.concatenate(sampled_per_bin)
            losses = dict(zip(flat.tolist(), scorer.score(n, [self.candidates[i] for i in flat]).tolist()))
            for b, sampled in enumerate(sampled_per_bin):
                if len(sampled) == 0:
                    continue
                alive = self.survivors[n][b]
                drop_count = min(len(sampled) // 2, len(alive) - c.keep)
                # Worst first; ties broken by index so the result does not depend on float noise in sorting.
                order = sorted(sampled.tolist(), key=lambda i: (-losses[i], i))
                dropped = np.array(order[:drop_count], dtype=int)
                self.survivors[n][b] = np.setdiff1d(alive, dropped)
        self.shrinks_done += 1

    # ---- state ---------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"config": asdict(self.config), "shrinks_done": self.shrinks_done,
                "survivors": [[b.tolist() for b in block] for block in self.survivors]}

    def load_state_dict(self, state: dict) -> None:
        self.shrinks_done = state["shrinks_done"]
        self.survivors = [[np.array(b, dtype=int) for b in block] for block in state["survivors"]]
