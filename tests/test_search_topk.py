"""Exact top-K selection: the fast search returns exactly the brute force's top-K, ties and boundaries included."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nasbert.search import (
    BlockTable,
    Cost,
    InfeasibleBudgetError,
    Selection,
    StructureCosts,
    top_k,
    top_k_bruteforce,
)
from search_space import Arch, SearchSpace

WIDTHS = (16, 32, 48)


def random_problem(rng: np.random.Generator, ties: bool) -> tuple[list[BlockTable], StructureCosts]:
    """3-4 blocks x 5-12 candidates; with `ties`, losses and latencies come from a few values (many exact ties,
    and sums like 0.1 + 0.2 + 0.3 whose value depends on the order they are added in)."""
    blocks = []
    for _ in range(int(rng.integers(3, 5))):
        size = int(rng.integers(5, 13))
        widths = rng.choice(WIDTHS[: int(rng.integers(1, 4))], size=size)
        if ties:
            loss, latency_ms = rng.integers(0, 4, size) * 0.1, rng.integers(0, 4, size) * 0.3
        else:
            loss, latency_ms = rng.random(size), rng.random(size) * 3
        blocks.append(BlockTable(widths, loss, latency_ms, rng.integers(0, 6, size)))
    first = {w: Cost(float(rng.integers(0, 3)) * 0.1, int(rng.integers(0, 3))) for w in WIDTHS}
    pair = {(a, b): (float(rng.integers(0, 3)) * 0.2, int(rng.integers(0, 4))) for a in WIDTHS for b in WIDTHS}
    return blocks, StructureCosts(Cost(0.7, 10), first=first, pair=lambda a, b: pair[a, b], last=first)


def reference(blocks: list[BlockTable], structure: StructureCosts) -> list[Selection]:
    """Every student, in plain Python, summed in the documented canonical order and sorted by the full key."""
    everyone = []
    for index in itertools.product(*(range(len(b)) for b in blocks)):
        widths = tuple(int(b.widths[i]) for b, i in zip(blocks, index))
        base = structure.of_widths(widths)
        loss, latency_ms = float(blocks[0].loss[index[0]]), float(blocks[0].latency_ms[index[0]])
        for b, i in zip(blocks[1:], index[1:]):
            loss += float(b.loss[i])
            latency_ms += float(b.latency_ms[i])
        params = base.params + sum(int(b.params[i]) for b, i in zip(blocks, index))
        everyone.append(Selection(index, widths, loss, base.latency_ms + latency_ms, params))
    return sorted(everyone, key=lambda s: (s.loss, s.latency_ms, s.indices))


def pick_budgets(case: int, everyone: list[Selection], rng: np.random.Generator) -> tuple[float | None, int | None]:
    """Budgets equal to totals that students really have, so boundary cases (total == budget) come up."""
    latencies = sorted({s.latency_ms for s in everyone})
    params = sorted({s.params for s in everyone})
    some_latency = latencies[int(rng.integers(len(latencies)))]
    some_params = params[int(rng.integers(len(params)))]
    mode = case % 7
    if mode == 0:
        return None, None
    if mode == 1:
        return some_latency, None
    if mode == 2:
        return None, some_params
    if mode == 3:
        return some_latency, some_params
    if mode == 4:  # both tight: they cut into each other, so the relaxed bounds are loose
        return latencies[len(latencies) // 5], params[len(params) // 5]
    if mode == 5:  # impossible
        return latencies[0] - 0.05, None
    return None, params[0] - 1


@pytest.mark.parametrize("case", range(100))
def test_fast_search_equals_bruteforce(case: int) -> None:
    rng = np.random.default_rng(1000 + case)
    blocks, structure = random_problem(rng, ties=case % 3 != 2)
    everyone = reference(blocks, structure)
    latency_budget_ms, params_budget = pick_budgets(case, everyone, rng)
    k = int(rng.choice([1, 3, 10, 40, 100]))
    budgets = dict(latency_budget_ms=latency_budget_ms, params_budget=params_budget, k=k)
    feasible = [s for s in everyone if (latency_budget_ms is None or s.latency_ms <= latency_budget_ms)
                and (params_budget is None or s.params <= params_budget)]
    if not feasible:
        for search in (top_k, top_k_bruteforce):
            with pytest.raises(InfeasibleBudgetError):
                search(blocks, structure, **budgets)
        return
    expected = feasible[:k]
    assert top_k_bruteforce(blocks, structure, **budgets) == expected
    assert top_k(blocks, structure, **budgets) == expected


def test_small_chunks_and_few_blocks_agree() -> None:
    rng = np.random.default_rng(7)
    blocks, structure = random_problem(rng, ties=True)
    expected = reference(blocks, structure)[:25]
    assert top_k_bruteforce(blocks, structure, k=25, chunk_size=7) == expected
    for n_blocks in (1, 2):
        part = blocks[:n_blocks]
        assert top_k(part, structure, k=5) == top_k_bruteforce(part, structure, k=5) == reference(part, structure)[:5]


def test_ties_break_by_latency_then_indices() -> None:
    blocks = [BlockTable([16, 16], [0.5, 0.5], [2.0, 1.0], [0, 0]),
              BlockTable([16, 16], [0.0, 0.0], [1.0, 1.0], [0, 0])]
    got = top_k(blocks, StructureCosts(), k=4)
    assert [s.indices for s in got] == [(1, 0), (1, 1), (0, 0), (0, 1)]
    assert [s.latency_ms for s in got] == [2.0, 2.0, 3.0, 3.0]


def test_fewer_feasible_than_k_returns_all_feasible() -> None:
    rng = np.random.default_rng(3)
    blocks, structure = random_problem(rng, ties=False)
    everyone = reference(blocks, structure)
    budget = sorted(s.latency_ms for s in everyone)[4]  # exactly 5 students fit
    got = top_k(blocks, structure, latency_budget_ms=budget, k=100)
    assert len(got) == 5 and got == [s for s in everyone if s.latency_ms <= budget]


def test_infeasible_budget_carries_smallest_latency_and_params() -> None:
    rng = np.random.default_rng(11)
    blocks, structure = random_problem(rng, ties=False)
    everyone = reference(blocks, structure)
    fastest = min(s.latency_ms for s in everyone)
    smallest = min(s.params for s in everyone)
    for search in (top_k, top_k_bruteforce):
        with pytest.raises(InfeasibleBudgetError) as caught:
            search(blocks, structure, latency_budget_ms=fastest * 0.9, k=10)
        assert caught.value.min_latency_ms == pytest.approx(fastest, rel=1e-12)
        assert caught.value.min_params == smallest
        assert f"the smallest latency this space can reach is {fastest:.4g} ms" in str(caught.value)


def test_budgets_each_reachable_but_not_together() -> None:
    # the fast candidate is big, the small candidate is slow
    blocks = [BlockTable([16, 16], [0.1, 0.2], [1.0, 5.0], [50, 1])]
    for search in (top_k, top_k_bruteforce):
        with pytest.raises(InfeasibleBudgetError, match="not both at once") as caught:
            search(blocks, StructureCosts(), latency_budget_ms=2.0, params_budget=10)
        assert (caught.value.min_latency_ms, caught.value.min_params) == (1.0, 1)


def test_structure_costs_for_space_match_space_params() -> None:
    space = SearchSpace.tiny()
    rng = np.random.default_rng(0)
    tables, candidates = [], []
    for _ in range(space.num_blocks):
        blocks = list(dict.fromkeys(space.sample_block(rng) for _ in range(6)))
        candidates.append(blocks)
        tables.append(BlockTable.from_candidates(space, blocks, rng.random(len(blocks)), rng.random(len(blocks))))
    got = top_k(tables, StructureCosts.for_space(space), k=5)
    for selection in got:
        arch = Arch(tuple(c[i] for c, i in zip(candidates, selection.indices)))
        assert selection.params == space.params(arch)


def test_bad_requests() -> None:
    table = BlockTable([16], [0.1], [1.0], [1])
    with pytest.raises(ValueError, match="k must be"):
        top_k([table], StructureCosts(), k=0)
    with pytest.raises(ValueError, match="entries"):
        BlockTable([16, 32], [0.1], [1.0], [1])
    with pytest.raises(ValueError, match=">= 0"):
        BlockTable([16], [0.1], [-1.0], [1])
