"""Model selection (NAS-BERT §3.3): exact top-K students under latency / params budgets."""

from nasbert.search.topk import (
    BlockTable,
    Cost,
    InfeasibleBudgetError,
    Selection,
    StructureCosts,
    top_k,
    top_k_bruteforce,
)

__all__ = ["BlockTable", "Cost", "InfeasibleBudgetError", "Selection", "StructureCosts", "top_k", "top_k_bruteforce"]
