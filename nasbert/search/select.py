"""Stage 3, search: the best students under each budget (NAS-BERT §3.3).

    approximated loss(arch) = sum over blocks of w_n * the block's dev distillation loss  (block_losses.json)
    predicted latency(arch) = the latency table's prediction (calibrated where the table is)

The weights w_n are fitted to chained students first (`nasbert.search.weights`; w = 1 is NAS-BERT's plain
sum). For every budget the exact top-K by approximated loss comes from `top_k` (by default among the students with
at least one attention layer, see `nasbert.search.required`); those K are then re-checked as whole chained
models on dev batches (super blocks chained on their own outputs from the teacher's embeddings, MSE against
the teacher at every block boundary, summed) and re-ranked; the first is the budget's winner.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from nasbert.errors import UserError
from nasbert.latency.lut import LatencyTable, op_family
from nasbert.search.config import SearchConfig
from nasbert.search.recheck import recheck
from nasbert.search.required import top_k_requiring
from nasbert.search.topk import BlockTable, InfeasibleBudgetError, StructureCosts, top_k
from nasbert.search.weights import BlockWeights, fit_block_weights, weighted
from nasbert.train_supernet.run import Run
from search_space import Arch, BlockArch, SearchSpace
from search_space.ops import FAMILIES as OP_FAMILIES
from search_space.ops import IDENTITY_NAME


@dataclass
class Candidate:
    arch: str
    params: int
    flops: int
    approx_loss: float
    predicted_latency_ms: float | None
    rechecked_loss: float | None = None
    measured_latency_ms: float | None = None  # end to end on this machine, where the search measured it


@dataclass
class BudgetResult:
    latency_budget_ms: float | None
    params_budget: int | None
    top_k: list[Candidate]
    note: str | None = None  # how the winner was confirmed by measurement, or why it could not be

    @property
    def winner(self) -> Candidate:
        return self.top_k[0]

    @property
    def name(self) -> str:
        parts = []
        if self.latency_budget_ms is not None:
            parts.append(f"{self.latency_budget_ms:g}ms")
        if self.params_budget is not None:
            parts.append(f"{self.params_budget / 1e6:g}M")
        return "-".join(parts)


class LatencyModel:
    """The table's prediction split into what top-K needs: per-block op terms, projections and a constant.

    Sums to `LatencyTable.predict_ms(arch)` (calibration factors per op family and constant included).
    """

    def __init__(self, table: LatencyTable):
        self.table = table
        self.factors = table.calibration.family_factor if table.calibration is not None else {}
        self.constant_ms = table.embeddings.median_ms + (table.calibration.constant_ms if table.calibration else 0.0)

    def block_ms(self, block: BlockArch) -> float:
        return self.table.block_ms(block)

    def projection_ms(self, in_width: int, out_width: int) -> float:
        return self.table.projection_entry(in_width, out_width).median_ms * self.factors.get("projection", 1.0)


def block_tables(space: SearchSpace, table: dict, latency: LatencyModel | None) -> tuple[list, list[BlockTable]]:
    """The candidates of each block (BlockArch) and their BlockTable for top-K."""
    candidates, tables = [], []
    for n, entries in enumerate(table["blocks"]):
        blocks = [BlockArch.parse(e["arch"]) for e in entries]
        for block in blocks:
            space.validate_block(block, n)
        losses = [e["dev_loss"] for e in entries]
        latency_ms = [latency.block_ms(b) if latency else 0.0 for b in blocks]
        candidates.append(blocks)
        tables.append(BlockTable.from_candidates(space, blocks, losses, latency_ms))
    return candidates, tables


def only_families(table: dict, families: list[str] | None) -> dict:
    """block_losses.json's table with each block's candidates cut to those whose ops are all of `families` (and
    identity); one sentence when a block keeps none."""
    if not families:
        return table
    allowed = set(families) | {IDENTITY_NAME}
    unknown = sorted(allowed - set(OP_FAMILIES))
    if unknown:
        raise UserError(f"--op-families takes some of {', '.join(f for f in OP_FAMILIES if f != IDENTITY_NAME)}, "
                        f"not {', '.join(unknown)}")
    return _keep_candidates(table, lambda block: all(op_family(op) in allowed for op in block.ops),
                            f"uses only {' '.join(sorted(families))} ops (and identity); widen --op-families")


def only_with_ops(table: dict, ops: list[str] | None) -> dict:
    """block_losses.json's table with each block's candidates cut to those with a layer of each of `ops` (op
    families: M, F, S, ...)."""
    if not ops:
        return table
    unknown = sorted(set(ops) - (set(OP_FAMILIES) - {IDENTITY_NAME}))
    if unknown:
        raise UserError(f"--in-every-block takes some of {', '.join(f for f in OP_FAMILIES if f != IDENTITY_NAME)}, "
                        f"not {', '.join(unknown)}")
    wanted = set(ops)
    return _keep_candidates(table, lambda block: wanted <= {op_family(op) for op in block.ops},
                            f"has a layer of each of {' '.join(ops)} (of the families searched); shorten "
                            f"--in-every-block")


def _keep_candidates(table: dict, keep: Callable[[BlockArch], bool], what: str) -> dict:
    """The table with each block's candidates cut to those `keep` accepts; 'no surviving candidate of block n
    {what}' when a block keeps none."""
    blocks = [[e for e in entries if keep(BlockArch.parse(e["arch"]))] for entries in table["blocks"]]
    for n, entries in enumerate(blocks):
        if not entries:
            raise UserError(f"no surviving candidate of block {n + 1} {what}")
    return {**table, "blocks": blocks}


@dataclass
class SearchOutcome:
    results: list[BudgetResult]
    tables: list[BlockTable]  # what was searched, for the Pareto plot
    structure: StructureCosts
    block_weights: BlockWeights | None = None  # None: the plain sum


def search(run: Run, config: SearchConfig, lut: LatencyTable | None = None) -> SearchOutcome:
    """Top-`config.top_k` per budget of `config.budgets()`, re-checked on `recheck_batches` and re-ranked; raises
    InfeasibleBudgetError (a UserError) for a budget nothing fits. `lut` is the table loaded from `config.lut`.
    With `weight_students` > 0 (and a re-check) the approximated loss weighs each block by a weight fitted on
    that many random chained students; 0 is NAS-BERT's plain sum. Unless `allow_attention_free`, only students
    with at least one attention (M) layer compete. With `measure` > 0 (and a table for this machine), the
    leaders of each latency budget are built and timed end to end, and the winner is the best-ranked one whose
    measured latency fits the budget (see `confirm_by_measurement`)."""
    budgets, k, recheck_batches, measure = config.budgets(), config.top_k, config.recheck_batches, config.measure
    require_attention, weight_students = not config.allow_attention_free, config.weight_students
    space = run.space
    if any(latency is not None for latency, _ in budgets) and lut is None:
        raise UserError("a latency budget needs a latency table: pass --lut lut.json (make one with "
                        "`nasbert latency profile`)")
    if lut is not None:
        lut.check_space(space)
        lut.require_runtime(config.runtime, config.precision)
    elif config.runtime or config.precision:
        raise UserError("--runtime and --precision name the runtime of a latency table; pass it with --lut")
    latency = LatencyModel(lut) if lut is not None else None
    table = only_families(run.block_table, config.op_families)
    table = only_with_ops(table, config.in_every_block)
    candidates, tables = block_tables(space, table, latency)
    structure = StructureCosts.for_space(space, latency.projection_ms if latency else None,
                                         latency.constant_ms if latency else 0.0)
    with_attention = [np.array(["M" in b.active_ops for b in blocks]) for blocks in candidates]
    if require_attention and not any(mask.any() for mask in with_attention):
        raise UserError("no surviving candidate of any block has an attention layer; pass --allow-attention-free "
                        "to search students without one")

    def chosen(latency_budget: float | None, params_budget: int | None, count: int) -> list:
        """The exact top-`count` selections of the current `tables` (re-bound below once weights are fitted)."""
        budget = dict(latency_budget_ms=latency_budget, params_budget=params_budget, k=count)
        return (top_k_requiring(tables, structure, with_attention, **budget,
                                subject="architecture with an attention layer") if require_attention
                else top_k(tables, structure, **budget))

    timer, unmeasured = measurer(lut, measure, config.min_run_time, config.rounds)
    searched_at: dict[float, float] = {}  # budget -> the looser table budget where the table over-predicts here
    for latency_budget, params_budget in budgets:  # an impossible budget fails before the slow work
        try:
            chosen(latency_budget, params_budget, 1)
        except InfeasibleBudgetError as error:
            if timer is None or latency_budget is None or error.min_latency_ms <= latency_budget:
                raise
            fastest = chosen(error.min_latency_ms * (1 + 1e-9), params_budget, 1)[0]
            arch = str(Arch(tuple(candidates[n][i] for n, i in enumerate(fastest.indices))))
            measured_ms = timer(arch)
            if measured_ms > latency_budget:
                raise UserError(f"{error} (its fastest student, {arch}, measured {measured_ms:.3f} ms here)") from None
            searched_at[latency_budget] = max(latency_budget * fastest.latency_ms / measured_ms * 0.995,
                                              fastest.latency_ms * (1 + 1e-9))
    rechecked: dict[str, float] = {}
    weights = None
    if weight_students > 0 and recheck_batches > 0:
        weights, rechecked = fit_block_weights(run, weight_students, recheck_batches)
        tables = weighted(tables, weights.weights)

    def ranked(latency_budget: float | None, params_budget: int | None) -> list[Candidate]:
        """The exact top-K under these budgets, re-checked as chained models (cached) and re-ranked."""
        selections = chosen(latency_budget, params_budget, k)
        archs = [Arch(tuple(candidates[n][i] for n, i in enumerate(s.indices))) for s in selections]
        if recheck_batches > 0:
            rechecked.update(recheck(run, [a for a in archs if str(a) not in rechecked], recheck_batches))
        top = [Candidate(str(a), s.params, space.flops(a), s.loss, s.latency_ms if lut is not None else None,
                         rechecked.get(str(a))) for a, s in zip(archs, selections)]
        if recheck_batches > 0:
            top.sort(key=lambda c: (c.rechecked_loss, c.approx_loss))
        return top

    results = []
    for latency_budget, params_budget in budgets:
        start = searched_at.get(latency_budget, latency_budget)
        result = BudgetResult(latency_budget, params_budget, ranked(start, params_budget))
        if latency_budget is not None and timer is not None:
            rerank = lambda table_ms, params=params_budget: ranked(table_ms, params)  # noqa: E731
            confirm_by_measurement(result, timer, measure, rerank, searched_with=start)
            if latency_budget not in searched_at:
                loosen_by_measurement(result, timer, measure, rerank)
        elif latency_budget is not None:
            result.note = unmeasured
        results.append(result)
    return SearchOutcome(results, tables, structure, weights)


def measurer(lut: LatencyTable | None, measure: int, min_run_time_s: float = 1.0, rounds: int = 3
             ) -> tuple[Callable[[str], float] | None, str | None]:
    """(arch -> measured ms under the table's conditions, in its runtime and precision; None), or (None, why not)
    where the table is not for this machine (searching for another device than the one the search runs on) or
    its runtime is not installed here, or (None, None) where nothing is to be measured."""
    if lut is None or measure <= 0:
        return None, None
    from nasbert.latency.students import arch_timer

    try:
        return arch_timer(lut, min_run_time_s, rounds), None
    except UserError as error:  # LatencyTableError included
        return None, f"not measured: {error}"


def timed_within(time_arch, arch: str, budget: float) -> float:
    """The arch's measured ms; one that reads within the budget is timed once more and the slower reading kept,
    as `nasbert baselines` confirms its members: a shared machine can read one timing 15 % fast, and a winner
    chosen on its fastest reading measured over the budget later (a searched student read 1.00 x in the search
    and 1.05-1.07 x in the comparison's side-by-side timings)."""
    first = time_arch(arch)
    return first if first > budget else max(first, time_arch(arch))


def confirm_by_measurement(result: BudgetResult, time_arch, count: int, rerank, max_tightenings: int = 12,
                           searched_with: float | None = None) -> None:
    """Make the winner one whose measured latency fits the budget, or refuse: never a winner over it.

    The leaders (up to `count`, in rank order) are timed end to end; the first within the budget on two timings
    (`timed_within`) wins. If none is, the budget the table is searched with is tightened by how much the leaders
    measured over their predictions (at least 0.5 % a round), and the new top-K is re-checked, re-ranked and
    measured, until a leader fits. When the tightened budget admits no student, or after `max_tightenings` rounds,
    it raises a UserError naming the fastest student it measured. `searched_with`: the table budget `result` was
    searched at, when not the budget itself.
    """
    budget = result.latency_budget_ms
    first = searched_with = searched_with or budget
    measured: dict[str, Candidate] = {}
    top = result.top_k
    for attempt in range(max_tightenings + 1):
        for candidate in top[:count]:
            if candidate.arch not in measured:
                candidate.measured_latency_ms = timed_within(time_arch, candidate.arch, budget)
                measured[candidate.arch] = candidate
            candidate.measured_latency_ms = measured[candidate.arch].measured_latency_ms
            if candidate.measured_latency_ms <= budget:
                top.remove(candidate)
                result.top_k = [candidate, *top]
                result.note = (f"winner measured {candidate.measured_latency_ms:.3f} ms <= {budget:.3f} ms"
                               + (f" (table searched at {searched_with:.3f} ms after the leaders measured over)"
                                  if attempt else f" (table searched at {first:.3f} ms: it over-predicts this "
                                                  f"machine)" if first > budget else ""))
                return
        if attempt == max_tightenings:
            break
        over = float(np.median([c.measured_latency_ms / c.predicted_latency_ms for c in measured.values()]))
        searched_with = min(searched_with, budget) / max(over, 1.0) * 0.995
        try:
            top = rerank(searched_with)
        except UserError:
            break
    fastest = min(measured.values(), key=lambda c: c.measured_latency_ms)
    raise UserError(f"no student measured within the {budget:.3f} ms budget on this machine: the fastest one "
                    f"measured, {fastest.arch}, took {fastest.measured_latency_ms:.3f} ms "
                    f"({fastest.measured_latency_ms / budget:.2f} x the budget; table searched down to "
                    f"{searched_with:.3f} ms); raise the budget or re-profile the table on a quiet machine")


def loosen_by_measurement(result: BudgetResult, time_arch, count: int, rerank, over_predicts: float = 0.97) -> None:
    """Where the table over-predicts this machine (the timed leaders' median measured / predicted under
    `over_predicts`), search it again at the budget over that ratio, so students the table wrongly put over the
    budget compete; the best-ranked of the new leaders (up to `count` timed) that measures within the budget wins
    (the confirmed winner among them), and the winner stays when none does."""
    budget = result.latency_budget_ms
    measured = {c.arch: c.measured_latency_ms for c in result.top_k if c.measured_latency_ms is not None}
    timed = [c for c in result.top_k if c.arch in measured and c.predicted_latency_ms]
    if not timed:
        return
    ratio = float(np.median([measured[c.arch] / c.predicted_latency_ms for c in timed]))
    if ratio >= over_predicts:
        return
    looser = budget / ratio * 0.995
    try:
        top = rerank(looser)
    except UserError:
        top = []
    for candidate in top[:count]:
        if candidate.arch not in measured:
            measured[candidate.arch] = timed_within(time_arch, candidate.arch, budget)
        candidate.measured_latency_ms = measured[candidate.arch]
    fits = next((c for c in top[:count] if c.measured_latency_ms <= budget), None)
    if fits is None or fits.arch == result.winner.arch:
        result.note = (f"{result.note or ''}; the table searched again at {looser:.3f} ms, as it over-predicted the "
                       f"leaders by {1 / ratio - 1:.0%}, ranked no student that measures within above it")
        return
    top.remove(fits)
    result.top_k = [fits, *top]
    result.note = (f"winner measured {fits.measured_latency_ms:.3f} ms <= {budget:.3f} ms (table searched at "
                   f"{looser:.3f} ms: it over-predicted the leaders by {1 / ratio - 1:.0%})")


def write_results(results: list[BudgetResult], run: Run, lut: LatencyTable | None, lut_path: str | None,
                  path: Path, block_weights: BlockWeights | None = None) -> None:
    """search.json, written atomically."""
    payload = {
        "run": str(run.path), "lut": lut_path, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "conditions": lut.conditions.to_json() if lut is not None else None,
        "calibrated": bool(lut is not None and lut.calibration is not None),
        "space": run.space.to_json(),
        "block_weights": block_weights.to_json() if block_weights is not None else None,
        "budgets": [{"name": r.name, "latency_budget_ms": r.latency_budget_ms, "params_budget": r.params_budget,
                     "winner": asdict(r.winner), "note": r.note, "top_k": [asdict(c) for c in r.top_k]}
                    for r in results],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.rename(path)


def format_table(results: list[BudgetResult]) -> str:
    header = (f"{'budget':>12} {'params':>11} {'GFLOPs':>7} {'pred ms':>8} {'meas ms':>8} {'approx':>8} "
              f"{'chained':>8}  winner arch")
    lines = [header]
    for r in results:
        w = r.winner
        predicted = f"{w.predicted_latency_ms:8.2f}" if w.predicted_latency_ms is not None else f"{'-':>8}"
        measured = f"{w.measured_latency_ms:8.2f}" if w.measured_latency_ms is not None else f"{'-':>8}"
        chained = f"{w.rechecked_loss:8.4f}" if w.rechecked_loss is not None else f"{'-':>8}"
        lines.append(f"{r.name:>12} {w.params:>11,} {w.flops / 1e9:7.2f} {predicted} {measured} {w.approx_loss:8.4f} "
                     f"{chained}  {w.arch}")
    lines += [f"{r.name:>12}: {r.note}" for r in results if r.note]
    return "\n".join(lines)


def plot_pareto(results: list[BudgetResult], tables: list[BlockTable], structure: StructureCosts, path: Path,
                samples: int = 20_000, seed: int = 0) -> Path:
    """Approximated loss vs predicted latency: a sample of the space in grey, each budget's top-K, winners starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    picks = [rng.integers(len(t), size=samples) for t in tables]
    loss = sum(t.loss[p] for t, p in zip(tables, picks))
    widths = np.stack([t.widths[p] for t, p in zip(tables, picks)], axis=1)
    latency = sum(t.latency_ms[p] for t, p in zip(tables, picks)) + np.array(
        [structure.of_widths(tuple(w)).latency_ms for w in widths])
    figure, axes = plt.subplots(figsize=(7, 5))
    axes.scatter(latency, loss, s=2, c="0.75", label=f"{samples:,} sampled students")
    for r in results:
        if r.latency_budget_ms is None:
            continue
        axes.scatter([c.predicted_latency_ms for c in r.top_k], [c.approx_loss for c in r.top_k], s=8,
                     label=f"top-{len(r.top_k)} under {r.name}")
        axes.axvline(r.latency_budget_ms, ls=":", c="0.4")
        axes.scatter([r.winner.predicted_latency_ms], [r.winner.approx_loss], marker="*", s=160, c="k", zorder=5)
    axes.set_xlabel("predicted latency (ms)")
    axes.set_ylabel("approximated loss (sum of block dev losses)")
    axes.set_title("nasbert search: winners starred")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
