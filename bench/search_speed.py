"""Top-K model selection speed: the exact fast search vs a numpy brute force over the whole product.

    python bench/search_speed.py [--k 100] [--seed 0] [--repeats 3] [--skip-bruteforce]

Realistic synthetic tables (seeded): block candidates drawn from the NAS-BERT space (widths 128..512, depth
1..6, ops M/F/S3/S5/S7), params exact from the space, latency from a synthetic per-op table (FLOPs-proportional
plus a per-op overhead, +-10 % noise per (op, width)), losses that fall with block size plus noise, structure
costs (embeddings, projections) from `StructureCosts.for_space`. Budgets are quantiles of the total latency /
params of random students: tight (1e-5), few % (3 %), loose (the slowest student: everything fits).

Times 10^8 students (100 candidates per block x 4 blocks) and 10^12 (1,000 per block) with the fast search,
and the brute force on 10^8 in the same run; checks that both return the same top-K and prints the speed-up.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nasbert.search import BlockTable, StructureCosts, top_k, top_k_bruteforce
from search_space import BlockArch, SearchSpace

FLOPS_PER_MS = 5e7  # a 50 GFLOP/s CPU
OP_OVERHEAD_MS = 0.02


def op_latency_table(space: SearchSpace, rng: np.random.Generator) -> dict[tuple[str, int], float]:
    """A made-up latency table: one entry per (op, width), FLOPs-proportional with overhead and noise."""
    return {(op, w): (space.layer_flops(op, w) / FLOPS_PER_MS + OP_OVERHEAD_MS) * rng.uniform(0.9, 1.1)
            for op in space.ops for w in space.widths}


def block_table(space: SearchSpace, lut: dict[tuple[str, int], float], size: int, block: int,
                rng: np.random.Generator) -> BlockTable:
    """`size` distinct candidates of one block: uniform width and depth, uniform ops; loss falls with size."""
    candidates: set[BlockArch] = set()
    while len(candidates) < size:
        depth = int(rng.integers(1, space.layers_per_block + 1))
        ops = tuple(space.ops[i] for i in rng.integers(len(space.ops), size=depth))
        width = int(space.widths[rng.integers(len(space.widths))])
        candidates.add(BlockArch(width, ops + ("I",) * (space.layers_per_block - depth)))
    blocks = sorted(candidates)
    latency_ms = [sum(lut[op, b.width] for op in b.active_ops) for b in blocks]
    params = np.array([space.block_params(b) for b in blocks], dtype=np.float64)
    # deeper blocks get harder: a larger base loss; bigger candidates reach lower loss, with noise
    loss = (0.05 * (block + 1) + 3.0 * (params + 2e5) ** -0.25) * rng.lognormal(0.0, 0.08, size=len(blocks))
    return BlockTable.from_candidates(space, blocks, loss, latency_ms)


def make_problem(size: int, seed: int, num_blocks: int = 4) -> tuple[list[BlockTable], StructureCosts]:
    space = SearchSpace(num_blocks=num_blocks)
    rng = np.random.default_rng(seed)
    lut = op_latency_table(space, rng)
    tables = [block_table(space, lut, size, n, rng) for n in range(num_blocks)]
    structure = StructureCosts.for_space(
        space, projection_latency_ms=lambda i, o: 2 * space.seq_len * i * o / FLOPS_PER_MS + OP_OVERHEAD_MS,
        embedding_latency_ms=0.1)
    return tables, structure


def budget_quantiles(tables: list[BlockTable], structure: StructureCosts, quantiles: list[float],
                     samples: int = 200_000, seed: int = 0) -> tuple[list[float], list[int]]:
    """Latency and params quantiles of random students (so a budget keeps about that fraction feasible)."""
    rng = np.random.default_rng(seed)
    index = [rng.integers(len(t), size=samples) for t in tables]
    latency = np.zeros(samples)
    params = np.zeros(samples, dtype=np.int64)
    for t, i in zip(tables, index):
        latency += t.latency_ms[i]
        params += t.params[i]
    widths = np.stack([t.widths[i] for t, i in zip(tables, index)], axis=1)
    cache: dict[tuple[int, ...], tuple[float, int]] = {}
    for row, key in enumerate(map(tuple, widths.tolist())):
        if key not in cache:
            cost = structure.of_widths(key)
            cache[key] = (cost.latency_ms, cost.params)
        latency[row] += cache[key][0]
        params[row] += cache[key][1]
    return ([float(np.quantile(latency, q)) for q in quantiles],
            [int(np.quantile(params, q)) for q in quantiles])


def timed(fn, *args, repeats: int = 1, **kwargs):
    """Median seconds over `repeats` runs, and the result."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="fast-search runs per case (median)")
    parser.add_argument("--skip-bruteforce", action="store_true")
    args = parser.parse_args()

    names = ["tight 1e-5", "few % (3 %)", "loose (max)"]
    quantiles = [1e-5, 0.03, 1.0]
    print(f"top-{args.k}, 4 blocks, seed {args.seed}; seconds (fast: median of {args.repeats}, brute force: one run)")
    print(f"{'space':>8} {'budget':>24} {'fast s':>8} {'brute s':>8} {'speed-up':>9}  same top-K")
    brute_seconds = []
    for size in (100, 1000):
        tables, structure = make_problem(size, args.seed)
        latency_budgets, params_budgets = budget_quantiles(tables, structure, quantiles, seed=args.seed)
        cases = [(f"latency {name}", dict(latency_budget_ms=lb)) for name, lb in zip(names, latency_budgets)]
        cases.append(("params 3 %", dict(params_budget=params_budgets[1])))
        cases.append(("latency+params 3 %", dict(latency_budget_ms=latency_budgets[1],
                                                    params_budget=params_budgets[1])))
        for name, budgets in cases:
            fast_s, fast = timed(top_k, tables, structure, k=args.k, repeats=args.repeats, **budgets)
            line = f"{f'10^{round(4 * np.log10(size))}':>8} {name:>24} {fast_s:8.3f}"
            if size == 100 and not args.skip_bruteforce:
                brute_s, brute = timed(top_k_bruteforce, tables, structure, k=args.k, **budgets)
                line += f" {brute_s:8.2f} {brute_s / fast_s:8.0f}x  {'yes' if brute == fast else 'NO'}"
                brute_seconds.append(brute_s)
            print(line, flush=True)
    if brute_seconds:
        hours = float(np.median(brute_seconds)) * 1e4 / 3600
        print(f"brute force on 10^12 (extrapolated x10^4 from the 10^8 median, not run): ~{hours:.0f} h")


if __name__ == "__main__":
    main()
