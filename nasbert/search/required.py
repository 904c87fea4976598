"""Exact top-K among the students that have at least one block from a required set (e.g. one with attention).

A student with no attention layer mixes tokens only through convolutions' local windows, so a [CLS]-pooled
task head sees a few dozen tokens around position 0; the block-wise hidden-state loss, averaged over every
token, cannot see that (on SST-2 such a student stayed at chance where uniform students of its latency reached
0.68). So search asks, by default, for at least one block whose candidate contains `M`.

"At least one of the N blocks is required" is the union of N spaces S_n in which block n is restricted to its
required candidates and the other blocks are free. A student of the true top-K of the union lies in some S_n,
and there it ranks no worse than in the union (S_n is a subset), so it is in the top-K of S_n: merging the
exact top-K of every S_n (`top_k`) and keeping the K best distinct students is exact, at N times the cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nasbert.search.topk import BlockTable, InfeasibleBudgetError, Selection, StructureCosts, top_k


def _subset(table: BlockTable, keep: np.ndarray) -> BlockTable:
    return BlockTable(widths=table.widths[keep], loss=table.loss[keep], latency_ms=table.latency_ms[keep],
                      params=table.params[keep])


def top_k_requiring(blocks: Sequence[BlockTable], structure: StructureCosts, required: Sequence[np.ndarray], *,
                    latency_budget_ms: float | None = None, params_budget: int | None = None,
                    k: int = 100, subject: str = "architecture with a required block") -> list[Selection]:
    """`top_k` over the students with at least one block n whose candidate has required[n][i] True (bool
    arrays, one per block, aligned with the tables). Same ordering and ties as `top_k`; raises
    `InfeasibleBudgetError` with the smallest latency and params such a student can reach if none fits."""
    merged: dict[tuple[int, ...], Selection] = {}
    infeasible: list[InfeasibleBudgetError] = []
    for n, mask in enumerate(required):
        keep = np.flatnonzero(np.asarray(mask, dtype=bool))
        if keep.size == 0:
            continue
        restricted = [*blocks[:n], _subset(blocks[n], keep), *blocks[n + 1:]]
        try:
            chosen = top_k(restricted, structure, latency_budget_ms=latency_budget_ms, params_budget=params_budget,
                           k=k)
        except InfeasibleBudgetError as error:
            infeasible.append(error)
            continue
        for s in chosen:
            indices = (*s.indices[:n], int(keep[s.indices[n]]), *s.indices[n + 1:])
            merged[indices] = Selection(indices, s.widths, s.loss, s.latency_ms, s.params)
    if not merged:
        if not infeasible:
            raise ValueError("no block has a required candidate")
        raise InfeasibleBudgetError(min(e.min_latency_ms for e in infeasible),
                                    min(e.min_params for e in infeasible), latency_budget_ms, params_budget, subject)
    return sorted(merged.values(), key=lambda s: (s.loss, s.latency_ms, s.indices))[:k]
