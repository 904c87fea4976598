"""Top-K among students with at least one required block (search's "at least one attention layer")."""

from __future__ import annotations

import numpy as np
import pytest
from test_search_topk import pick_budgets, random_problem, reference

from nasbert.search import InfeasibleBudgetError
from nasbert.search.required import top_k_requiring


@pytest.mark.parametrize("case", range(60))
def test_equals_the_filtered_bruteforce(case: int) -> None:
    rng = np.random.default_rng(5000 + case)
    blocks, structure = random_problem(rng, ties=case % 3 != 2)
    # about a third of the candidates are "required"; sometimes a block has none at all
    required = [rng.random(len(b)) < (0.0 if case % 5 == 4 and n == 0 else 0.35) for n, b in enumerate(blocks)]
    everyone = reference(blocks, structure)
    latency_budget_ms, params_budget = pick_budgets(case, everyone, rng)
    k = int(rng.choice([1, 3, 10, 40, 100]))
    budgets = dict(latency_budget_ms=latency_budget_ms, params_budget=params_budget, k=k)
    feasible = [s for s in everyone if any(required[n][i] for n, i in enumerate(s.indices))
                and (latency_budget_ms is None or s.latency_ms <= latency_budget_ms)
                and (params_budget is None or s.params <= params_budget)]
    if not feasible:
        with pytest.raises(InfeasibleBudgetError):
            top_k_requiring(blocks, structure, required, **budgets)
        return
    assert top_k_requiring(blocks, structure, required, **budgets) == feasible[:k]


def test_the_error_names_the_smallest_latency_a_student_with_a_required_block_reaches() -> None:
    rng = np.random.default_rng(11)
    blocks, structure = random_problem(rng, ties=False)
    required = [np.zeros(len(b), dtype=bool) for b in blocks]
    required[-1][int(np.argmax(blocks[-1].latency_ms))] = True  # only the slowest candidate of the last block
    everyone = [s for s in reference(blocks, structure) if required[-1][s.indices[-1]]]
    fastest = min(s.latency_ms for s in everyone)
    with pytest.raises(InfeasibleBudgetError) as error:
        top_k_requiring(blocks, structure, required, latency_budget_ms=fastest - 1e-6)
    assert error.value.min_latency_ms == pytest.approx(fastest)
