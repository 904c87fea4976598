"""Exact top-K model selection (NAS-BERT §3.3): the K lowest-loss students that fit a latency/params budget.
(One file of ~560 lines on purpose: the algorithm, its floating-point contract and the brute force it is
tested against share `_Space.evaluate`; splitting them would split one proof.)

A student is one candidate per block, (i_1, ..., i_N). Its approximated loss is the sum of its blocks' dev
losses; its latency and params are a constant (embeddings) + terms that depend only on the block widths
(embedding -> block 1, block n -> n+1 and block N -> hidden projections) + the blocks' own costs:

    loss(i)       = loss_1[i_1] + ... + loss_N[i_N]
    latency_ms(i) = structure_ms(w_1..w_N) + lat_1[i_1] + ... + lat_N[i_N]      (same for params)

`top_k` returns exactly what `top_k_bruteforce` returns (the K smallest losses among the feasible students, ties
broken by latency, then by the index tuple), but in ~0.05 s for 10^8 students (4 blocks x 100 candidates) and
~0.5 s for 10^12 (4 x 1,000) on two CPU cores, where the brute force needs ~2 s for 10^8 (bench/search_speed.py):

1. Group candidates by width. Within one width tuple the structure terms are a constant, so the problem is
   additive: a budget on the sum of block costs.
2. Meet in the middle: for each width sub-tuple, list every combination of the first N//2 blocks ("left") and
   of the rest ("right"). Right lists are kept sorted by loss, by latency and by params, with prefix minima of
   the loss along the latency and params orders.
3. Lower bound per left entry l: the least loss of a right partner that fits the remaining latency budget
   (prefix minimum at a binary-searched position), likewise for params; bound(l) = loss_l + the larger. With one
   budget this bound is reached by a real student, so the K-th smallest bound is a loss threshold T that at
   least K students meet. Width tuples are visited best-first and the threshold tightens as bounds come in, so
   most left entries (and whole width tuples) are never looked at.
4. Enumerate every student with loss <= T that fits the budgets: for each left entry whose bound is <= T, scan
   the shortest of its three right prefixes (by loss, latency or params) and filter by the other two.
5. Verify: if fewer than K of the enumerated students have loss <= T (possible with two budgets, whose bound
   is a relaxation), raise T geometrically and repeat; at T = inf everything feasible is enumerated. Once at
   least K students with loss <= T are found, every student of the true top-K has been enumerated.

Floating point: the totals that decide feasibility and the ranking are always computed in one canonical order
(`_Space.evaluate`, shared with the brute force: losses added block 1 to N; latency = structure cost summed as
constant, first, pairs, last, plus the block latencies added block 1 to N), so ties and budgets on the boundary
come out the same in both. The meet-in-the-middle sums use another order, so steps 3-4 compare with a tiny
relative slack (a superset) and the canonical totals then decide.

Costs: the halves hold about prod(C_n)^(1/2) entries each (fine for 4 blocks of 1,000; 6 blocks of 1,000 would
need 10^9); and every student tied with the K-th loss is enumerated, so a table with massively tied losses
(e.g. all equal) degrades towards the brute force, in time though not in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasbert.errors import UserError

# How far apart two orders of summing the same float64 terms can be, relative to the magnitudes involved;
# a few ulps would do, a million is still exact for the ranking (the slack only admits extra candidates).
_REL_SLACK = 1e-9
# Upper bound on the number of (left, right) pairs materialised at once while enumerating.
_ENUM_CHUNK = 1 << 21


@dataclass(frozen=True)
class Cost:
    """A latency and a parameter count, the two things a budget constrains."""

    latency_ms: float = 0.0
    params: int = 0


# A width-dependent term: a table keyed by width (first/last) or by (width_n, width_n+1) (pair), or a function
# of the width(s); values are a Cost or a (latency_ms, params) pair.
WidthTerm = Mapping[Any, Any] | Callable[..., Any] | None


def _as_cost(value: Any) -> Cost:
    if isinstance(value, Cost):
        return value
    latency_ms, params = value
    return Cost(float(latency_ms), int(params))


def _lookup(term: WidthTerm, *widths: int) -> Cost:
    if term is None:
        return Cost()
    if isinstance(term, Mapping):
        return _as_cost(term[widths if len(widths) > 1 else widths[0]])
    return _as_cost(term(*widths))


@dataclass(frozen=True)
class StructureCosts:
    """Costs of a student that depend only on its block widths, not on its ops.

    constant: embeddings (and anything else every student pays); first: the projection into block 1, keyed by
    w_1; pair: the projection between blocks n and n+1, keyed by (w_n, w_n+1); last: the projection out of
    block N, keyed by w_N. Each term is a table or a function (see `WidthTerm`); None means free.
    """

    constant: Cost = field(default_factory=Cost)
    first: WidthTerm = None
    pair: WidthTerm = None
    last: WidthTerm = None

    def of_widths(self, widths: Sequence[int]) -> Cost:
        """The structure cost of one width tuple, summed in the canonical order (constant, first, pairs, last)."""
        latency_ms, params = float(self.constant.latency_ms), int(self.constant.params)
        terms = [_lookup(self.first, widths[0])]
        terms += [_lookup(self.pair, a, b) for a, b in zip(widths[:-1], widths[1:])]
        terms.append(_lookup(self.last, widths[-1]))
        for term in terms:
            latency_ms += float(term.latency_ms)
            params += int(term.params)
        return Cost(latency_ms, params)

    @classmethod
    def for_space(cls, space: Any, projection_latency_ms: Callable[[int, int], float] | None = None,
                  embedding_latency_ms: float = 0.0) -> StructureCosts:
        """The structure costs of a `SearchSpace` student: params exactly as `SearchSpace.params` counts them
        (embeddings, embedding projection, fused projections, output projection), latency from a function of a
        projection's (in, out) widths, e.g. a latency-table lookup."""
        latency = projection_latency_ms or (lambda i, o: 0.0)

        def projection(i: int, o: int) -> Cost:
            return Cost(float(latency(i, o)), i * o + o)

        return cls(constant=Cost(float(embedding_latency_ms), space.embedding_params()),
                   first=lambda w: projection(space.embedding_dim, w), pair=projection,
                   last=lambda w: projection(w, space.hidden_size))


@dataclass(frozen=True, eq=False)
class BlockTable:
    """The candidates of one block: their width, approximated (dev distillation) loss, latency and params."""

    widths: np.ndarray
    loss: np.ndarray
    latency_ms: np.ndarray
    params: np.ndarray

    def __post_init__(self) -> None:
        widths = np.asarray(self.widths)
        if widths.size and not np.issubdtype(widths.dtype, np.integer):
            if not np.all(widths == np.round(widths)):
                raise ValueError("block widths must be integers")
        arrays = {"widths": widths.astype(np.int64), "loss": np.asarray(self.loss, dtype=np.float64),
                  "latency_ms": np.asarray(self.latency_ms, dtype=np.float64),
                  "params": np.asarray(self.params, dtype=np.int64)}
        for name, array in arrays.items():
            if array.ndim != 1:
                raise ValueError(f"block table {name} must be one-dimensional, got shape {array.shape}")
            if array.shape != arrays["widths"].shape:
                raise ValueError(f"block table {name} has {array.size} entries but widths has {widths.size}")
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if widths.size == 0:
            raise ValueError("a block table needs at least one candidate")
        if not (np.all(np.isfinite(self.loss)) and np.all(np.isfinite(self.latency_ms))):
            raise ValueError("block losses and latencies must be finite numbers")
        if np.any(self.latency_ms < 0) or np.any(self.params < 0):
            raise ValueError("block latencies and params must be >= 0")

    def __len__(self) -> int:
        return int(self.widths.size)

    @classmethod
    def from_candidates(cls, space: Any, candidates: Sequence[Any], loss: Sequence[float],
                        latency_ms: Sequence[float]) -> BlockTable:
        """A table for `BlockArch` candidates of a `SearchSpace`: widths and params are taken from the space."""
        return cls(widths=np.array([b.width for b in candidates], dtype=np.int64), loss=np.asarray(loss),
                   latency_ms=np.asarray(latency_ms),
                   params=np.array([space.block_params(b) for b in candidates], dtype=np.int64))


@dataclass(frozen=True)
class Selection:
    """One selected student: the candidate index per block and its totals (structure terms included)."""

    indices: tuple[int, ...]
    widths: tuple[int, ...]
    loss: float
    latency_ms: float
    params: int


class InfeasibleBudgetError(UserError):
    """No student of the space fits the budget; carries the smallest latency and params the space can reach."""

    def __init__(self, min_latency_ms: float, min_params: int, latency_budget_ms: float | None,
                 params_budget: int | None, subject: str = "architecture in the search space") -> None:
        self.min_latency_ms = min_latency_ms
        self.min_params = min_params
        self.latency_budget_ms = latency_budget_ms
        self.params_budget = params_budget
        budgets = []
        if latency_budget_ms is not None:
            budgets.append(f"latency <= {latency_budget_ms:g} ms")
        if params_budget is not None:
            budgets.append(f"params <= {params_budget:,}")
        both = (latency_budget_ms is not None and params_budget is not None and min_latency_ms <= latency_budget_ms
                and min_params <= params_budget)
        super().__init__(
            f"no {subject} fits {' and '.join(budgets) or 'the budget'}: the smallest "
            f"latency this space can reach is {min_latency_ms:.4g} ms and the smallest params count is "
            f"{min_params:,}{' (but not both at once)' if both else ''}; raise the budget")


# ---- shared preparation and the canonical totals --------------------------------------------------------------


class _Space:
    """The blocks grouped by width, the structure-cost tables, and the canonical totals."""

    def __init__(self, blocks: Sequence[BlockTable], structure: StructureCosts) -> None:
        if not blocks:
            raise ValueError("top-K selection needs at least one block")
        self.blocks = list(blocks)
        self.num_blocks = len(blocks)
        self.widths = [np.unique(b.widths) for b in blocks]  # distinct widths per block, ascending
        self.width_index = [np.searchsorted(w, b.widths) for w, b in zip(self.widths, blocks)]  # (C_n,)
        # groups[n][j]: indices of block n's candidates of width widths[n][j]
        self.groups = [[np.flatnonzero(wi == j) for j in range(len(w))] for w, wi in zip(self.widths, self.width_index)]
        shape = tuple(len(w) for w in self.widths)
        self.structure_latency_ms = np.empty(shape, dtype=np.float64)
        self.structure_params = np.empty(shape, dtype=np.int64)
        for key in itertools.product(*(range(n) for n in shape)):
            cost = structure.of_widths([int(self.widths[n][j]) for n, j in enumerate(key)])
            self.structure_latency_ms[key] = cost.latency_ms
            self.structure_params[key] = cost.params
        # slack for comparing sums taken in another order than the canonical one (see module docstring)
        self.loss_slack = _REL_SLACK * sum(float(np.abs(b.loss).max()) for b in blocks)
        self.latency_scale = float(np.abs(self.structure_latency_ms).max()) + sum(
            float(b.latency_ms.max()) for b in blocks)

    def evaluate(self, index: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Canonical totals of students given per-block index arrays (broadcastable): loss summed block 1..N,
        latency = structure + (block latencies summed 1..N), params exactly. The brute force uses this too."""
        loss = latency = params = None
        for b, i in zip(self.blocks, index):
            loss = b.loss[i] if loss is None else loss + b.loss[i]
            latency = b.latency_ms[i] if latency is None else latency + b.latency_ms[i]
            params = b.params[i] if params is None else params + b.params[i]
        key = tuple(wi[i] for wi, i in zip(self.width_index, index))
        return loss, self.structure_latency_ms[key] + latency, self.structure_params[key] + params

    def smallest_costs(self) -> tuple[float, int]:
        """The smallest latency and the smallest params count any student reaches (canonical)."""
        best_latency, best_params = np.inf, None
        for key in itertools.product(*(range(len(w)) for w in self.widths)):
            fastest = [g[j][np.argmin(b.latency_ms[g[j]])] for b, g, j in zip(self.blocks, self.groups, key)]
            smallest = [g[j][np.argmin(b.params[g[j]])] for b, g, j in zip(self.blocks, self.groups, key)]
            best_latency = min(best_latency, float(self.evaluate(fastest)[1]))
            params = int(self.evaluate(smallest)[2])
            best_params = params if best_params is None else min(best_params, params)
        return best_latency, best_params


def _check_request(k: int, latency_budget_ms: float | None, params_budget: int | None) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if latency_budget_ms is not None and np.isnan(latency_budget_ms):
        raise ValueError("the latency budget is NaN")


def _select(space: _Space, index: np.ndarray, k: int, latency_budget_ms: float | None,
            params_budget: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The (at most) k best feasible rows of `index` (M, N), by canonical loss, then latency, then indices."""
    loss, latency, params = space.evaluate(index.T)
    feasible = np.ones(len(index), dtype=bool)
    if latency_budget_ms is not None:
        feasible &= latency <= latency_budget_ms
    if params_budget is not None:
        feasible &= params <= params_budget
    index, loss, latency, params = index[feasible], loss[feasible], latency[feasible], params[feasible]
    if len(index) > k:  # keep everything tied with the k-th loss, then sort exactly
        kth = np.partition(loss, k - 1)[k - 1]
        keep = loss <= kth
        index, loss, latency, params = index[keep], loss[keep], latency[keep], params[keep]
    order = np.lexsort(tuple(index[:, n] for n in reversed(range(index.shape[1]))) + (latency, loss))[:k]
    return index[order], loss[order], latency[order], params[order]


def _selections(space: _Space, rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> list[Selection]:
    index, loss, latency, params = rows
    return [Selection(indices=tuple(int(i) for i in row),
                      widths=tuple(int(b.widths[i]) for b, i in zip(space.blocks, row)),
                      loss=float(lo), latency_ms=float(la), params=int(pa))
            for row, lo, la, pa in zip(index, loss, latency, params)]


# ---- brute force ---------------------------------------------------------------------------------------------


def top_k_bruteforce(blocks: Sequence[BlockTable], structure: StructureCosts, *,
                     latency_budget_ms: float | None = None, params_budget: int | None = None, k: int = 100,
                     chunk_size: int = 1 << 22) -> list[Selection]:
    """The reference: every student of the full product, evaluated in chunks of at most ~`chunk_size` students
    (memory stays around 100 bytes per student of a chunk). Same contract and results as `top_k`."""
    _check_request(k, latency_budget_ms, params_budget)
    space = _Space(blocks, structure)
    sizes = [len(b) for b in blocks]
    # the last blocks form one broadcast grid per chunk; the first `split` blocks are looped over
    split = len(sizes) - 1
    while split > 0 and int(np.prod(sizes[split - 1:])) <= chunk_size:
        split -= 1
    tail_shape = tuple(sizes[split:])
    tail_index = [np.arange(c).reshape((-1,) + (1,) * (len(tail_shape) - 1 - t)) for t, c in enumerate(sizes[split:])]
    best: tuple[np.ndarray, ...] | None = None
    for prefix in itertools.product(*(range(c) for c in sizes[:split])):
        loss, latency, params = space.evaluate([np.intp(i) for i in prefix] + tail_index)
        loss = np.broadcast_to(loss, tail_shape)
        feasible = np.ones(tail_shape, dtype=bool)
        if latency_budget_ms is not None:
            feasible &= latency <= latency_budget_ms
        if params_budget is not None:
            feasible &= params <= params_budget
        if best is not None and len(best[0]) == k:
            feasible &= loss <= best[1][-1]  # cannot beat the current k-th
        flat = np.flatnonzero(feasible)
        if flat.size == 0:
            continue
        if flat.size > k:
            values = loss.reshape(-1)[flat]
            flat = flat[values <= np.partition(values, k - 1)[k - 1]]
        rows = np.column_stack([np.full(flat.size, i, dtype=np.int64) for i in prefix]
                               + [t.astype(np.int64) for t in np.unravel_index(flat, tail_shape)])
        if best is not None:
            rows = np.concatenate([best[0], rows])
        best = _select(space, rows, k, latency_budget_ms, params_budget)
    if best is None or len(best[0]) == 0:
        raise InfeasibleBudgetError(*space.smallest_costs(), latency_budget_ms, params_budget)
    return _selections(space, best)


# ---- the fast search -----------------------------------------------------------------------------------------


@dataclass
class _Half:
    """Every combination of one width sub-tuple over a half of the blocks, sorted by (approximate) loss."""

    index: np.ndarray  # (M, blocks in half): candidate index per block
    loss: np.ndarray  # (M,) ascending
    latency_ms: np.ndarray
    params: np.ndarray
    # right halves only: for each budgeted cost, (order, that cost in that order, prefix minimum of the loss)
    orders: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def min_loss(self) -> float:
        return float(self.loss[0])


def _build_half(space: _Space, block_ids: range, key: tuple[int, ...], costs: Sequence[str]) -> _Half:
    groups = [space.groups[n][j] for n, j in zip(block_ids, key)]
    if groups:
        grids = np.meshgrid(*groups, indexing="ij")
        index = np.stack([g.reshape(-1) for g in grids], axis=1)
    else:  # an empty half (one block in all): a single empty combination
        index = np.zeros((1, 0), dtype=np.int64)
    loss = np.zeros(len(index))
    latency = np.zeros(len(index))
    params = np.zeros(len(index), dtype=np.int64)
    for col, n in enumerate(block_ids):
        b = space.blocks[n]
        loss = loss + b.loss[index[:, col]] if col else b.loss[index[:, col]]
        latency = latency + b.latency_ms[index[:, col]] if col else b.latency_ms[index[:, col]]
        params = params + b.params[index[:, col]]
    order = np.argsort(loss)
    half = _Half(index[order], loss[order], latency[order], params[order])
    for cost in costs:
        values = half.latency_ms if cost == "latency" else half.params
        by_cost = np.argsort(values)
        half.orders[cost] = (by_cost, values[by_cost], np.minimum.accumulate(half.loss[by_cost]))
    return half


@dataclass
class _Pairing:
    """One full width tuple: a left and a right half plus the room the structure terms leave in each budget."""

    left: _Half
    right: _Half
    rooms: dict[str, float | int]  # budget - structure cost (latency with slack)
    bound: float  # min left loss + min right loss: no student of this tuple does better

    def left_values(self, cost: str) -> np.ndarray:
        return self.left.latency_ms if cost == "latency" else self.left.params

    def right_values(self, cost: str) -> np.ndarray:
        return self.right.latency_ms if cost == "latency" else self.right.params


@dataclass
class _Bounds:
    """The left entries of one pairing that may start a student of loss <= the threshold, with their bounds and,
    per budgeted cost, the length of their feasible right prefix in that cost's order."""

    pairing: _Pairing
    left: np.ndarray
    bound: np.ndarray
    prefix: dict[str, np.ndarray]

    def restrict(self, keep: np.ndarray) -> _Bounds:
        return _Bounds(self.pairing, self.left[keep], self.bound[keep], {c: p[keep] for c, p in self.prefix.items()})


def _lower_bounds(pairing: _Pairing, limit: float) -> _Bounds:
    """Step 3: bound(l) for the left entries that could reach loss <= limit; those above it are dropped."""
    left, right = pairing.left, pairing.right
    n = int(np.searchsorted(left.loss, limit - right.min_loss, side="right"))
    ids = np.arange(n)
    bound = left.loss[:n] + right.min_loss
    prefix = {}
    for cost, room in pairing.rooms.items():
        _, sorted_values, premin_loss = right.orders[cost]
        remaining = room - pairing.left_values(cost)[ids]
        fits = remaining >= sorted_values[0]  # some right entry fits at all
        ids, remaining, bound = ids[fits], remaining[fits], bound[fits]
        for c in prefix:
            prefix[c] = prefix[c][fits]
        p = np.searchsorted(sorted_values, remaining, side="right")  # >= 1
        prefix[cost] = p
        bound = np.maximum(bound, left.loss[ids] + premin_loss[p - 1])
    keep = bound <= limit
    return _Bounds(pairing, ids[keep], bound[keep], {c: p[keep] for c, p in prefix.items()})


def _expand(lengths: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(owner, position) for every position < lengths[owner], in chunks of about _ENUM_CHUNK pairs."""
    ends = np.cumsum(lengths)
    start = 0
    while start < len(lengths):
        base = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, base + _ENUM_CHUNK, side="right")), start + 1)
        counts = lengths[start:stop]
        owner = np.repeat(np.arange(start, stop), counts)
        position = np.arange(owner.size) - np.repeat(ends[start:stop] - counts - base, counts)
        yield owner, position
        start = stop


def _enumerate(bounds: _Bounds, limit: float, loss_slack: float) -> Iterator[np.ndarray]:
    """Step 4: (M, N) index rows, chunk by chunk, of every student of this pairing with loss <= limit that fits
    the budgets (both with slack: a superset that the canonical totals then filter)."""
    pairing = bounds.pairing
    left, right = pairing.left, pairing.right
    ids = bounds.left
    # candidate prefixes: by loss (partners light enough), and by each budgeted cost (partners that fit)
    prefixes = {"loss": np.searchsorted(right.loss, limit + loss_slack - left.loss[ids], side="right")}
    prefixes.update(bounds.prefix)
    names = list(prefixes)
    shortest = np.argmin(np.stack([prefixes[c] for c in names]), axis=0)  # scan the shortest, filter the rest
    for which, name in enumerate(names):
        chosen = np.flatnonzero(shortest == which)
        if chosen.size == 0:
            continue
        order = None if name == "loss" else right.orders[name][0]
        for owner, position in _expand(prefixes[name][chosen]):
            l_ids = ids[chosen[owner]]
            r_ids = position if order is None else order[position]
            ok = left.loss[l_ids] + right.loss[r_ids] <= limit + loss_slack
            for cost, room in pairing.rooms.items():
                ok &= pairing.left_values(cost)[l_ids] + pairing.right_values(cost)[r_ids] <= room
            yield np.concatenate([left.index[l_ids[ok]], right.index[r_ids[ok]]], axis=1)


class _Pool:
    """The best k feasible students seen so far; rows are buffered and reduced every ~_ENUM_CHUNK rows, so memory
    stays bounded however many students the enumeration produces."""

    def __init__(self, space: _Space, k: int, latency_budget_ms: float | None, params_budget: int | None) -> None:
        self.space, self.k, self.budgets = space, k, (latency_budget_ms, params_budget)
        self.pending: list[np.ndarray] = [np.zeros((0, space.num_blocks), dtype=np.int64)]
        self.pending_rows = 0

    def add(self, rows: np.ndarray) -> None:
        self.pending.append(rows)
        self.pending_rows += len(rows)
        if self.pending_rows > self.k + _ENUM_CHUNK:
            self.best()

    def best(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        best = _select(self.space, np.concatenate(self.pending), self.k, *self.budgets)
        self.pending, self.pending_rows = [best[0]], len(best[0])
        return best


def top_k(blocks: Sequence[BlockTable], structure: StructureCosts, *, latency_budget_ms: float | None = None,
          params_budget: int | None = None, k: int = 100) -> list[Selection]:
    """The k students with the smallest approximated loss among those within the budgets (None: unconstrained),
    best first, ties broken by latency then by the index tuple. Fewer than k if fewer fit; raises
    `InfeasibleBudgetError` (with the smallest latency and params the space reaches) if none does."""
    _check_request(k, latency_budget_ms, params_budget)
    space = _Space(blocks, structure)
    n_blocks = space.num_blocks
    slack = space.loss_slack
    min_latency_ms, min_params = space.smallest_costs()
    latency_slack = _REL_SLACK * (space.latency_scale + abs(latency_budget_ms or 0.0))
    if ((latency_budget_ms is not None and min_latency_ms > latency_budget_ms + latency_slack)
            or (params_budget is not None and min_params > params_budget)):
        raise InfeasibleBudgetError(min_latency_ms, min_params, latency_budget_ms, params_budget)

    # steps 1-2: halves per width sub-tuple, pairings per full width tuple
    split = n_blocks // 2
    left_ids, right_ids = range(split), range(split, n_blocks)
    costs = [c for c, budget in (("latency", latency_budget_ms), ("params", params_budget)) if budget is not None]
    lefts = {key: _build_half(space, left_ids, key, ())
             for key in itertools.product(*(range(len(space.widths[n])) for n in left_ids))}
    rights = {key: _build_half(space, right_ids, key, costs)
              for key in itertools.product(*(range(len(space.widths[n])) for n in right_ids))}
    left_min = {key: {"latency": left.latency_ms.min(), "params": left.params.min()} for key, left in lefts.items()}
    pairings = []
    for lkey, left in lefts.items():
        for rkey, right in rights.items():
            rooms: dict[str, float | int] = {}
            if latency_budget_ms is not None:
                rooms["latency"] = latency_budget_ms - space.structure_latency_ms[lkey + rkey] + latency_slack
            if params_budget is not None:
                rooms["params"] = int(params_budget - space.structure_params[lkey + rkey])
            # skip width tuples whose lightest students already break a budget
            if all(left_min[lkey][c] + right.orders[c][1][0] <= rooms[c] for c in rooms):
                pairings.append(_Pairing(left, right, rooms, left.min_loss + right.min_loss))
    pairings.sort(key=lambda p: p.bound)

    # step 3: the K-th smallest lower bound, tightening the threshold as width tuples are visited best-first
    limit, kept, best_bounds = np.inf, [], np.empty(0)
    for pairing in pairings:
        if pairing.bound > limit + slack:
            break
        bounds = _lower_bounds(pairing, limit + slack)
        if bounds.left.size == 0:
            continue
        kept.append(bounds)
        best_bounds = np.concatenate([best_bounds, bounds.bound])
        if best_bounds.size >= k:
            best_bounds = np.partition(best_bounds, k - 1)[:k]
            limit = float(best_bounds.max())
    if not kept:
        raise InfeasibleBudgetError(min_latency_ms, min_params, latency_budget_ms, params_budget)
    lowest = min(float(b.bound.min()) for b in kept)
    highest = sum(float(b.loss.max()) for b in space.blocks)  # no student has a larger loss
    step = max(limit - lowest, 1e-3 * (highest - lowest)) if np.isfinite(limit) else np.inf

    # steps 4-5: enumerate at the threshold; raise it until at least k students at or under it are found
    while True:
        pool = _Pool(space, k, latency_budget_ms, params_budget)
        for bounds in kept:
            bounds = bounds.restrict(bounds.bound <= limit + slack)
            for rows in _enumerate(bounds, limit, slack) if bounds.left.size else ():
                pool.add(rows)
        best = pool.best()
        if np.isinf(limit) or int(np.count_nonzero(best[1] <= limit)) >= k:
            break
        limit = limit + step if 0 < step and limit + step < highest + slack else np.inf
        step *= 4
        kept = [b for b in (_lower_bounds(p, limit + slack) for p in pairings if p.bound <= limit + slack)
                if b.left.size]
    if len(best[0]) == 0:
        raise InfeasibleBudgetError(min_latency_ms, min_params, latency_budget_ms, params_budget)
    return _selections(space, best)
