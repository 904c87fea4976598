"""Price students a table did not profile: widths between two it did, and a narrower feed-forward ratio (`nasbert
baselines` tries a width-pruned teacher at every head multiple between the space's widths, then with narrower FFNs,
when none of the space's own grid fits the budget).

An op at width w, lo < w < hi (the nearest profiled widths), costs the straight line between its two entries:
(1 - t) * entry(lo) + t * entry(hi), t = (w - lo) / (hi - lo); a projection in -> out is interpolated the same way
in each of its two widths that the table lacks (bilinear when both are new). Widths outside the profiled range are
refused (no extrapolation). At another FFN ratio each op's entry is scaled by its FLOPs at that ratio over its FLOPs
at the profiled one (only the feed-forward's change: inner ratio * w); this under-prices the fixed per-call cost of
a small FFN. Priced entries carry `runs_count` 0: nothing was timed for them. The chooser times every member it
picks, so these prices only order what to time first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from nasbert.latency.lut import Entry, LatencyTable, LatencyTableError
from search_space import get_op


def with_widths(table: LatencyTable, widths: Iterable[int]) -> LatencyTable:
    """A copy of `table` whose space also holds `widths`, each priced between the profiled widths around it."""
    new = sorted({int(w) for w in widths} - set(table.space.widths))
    if not new:
        return table
    space = table.space.with_widths(new)  # refuses a width that is not a multiple of the head dim
    layers = {op: {**by_width, **{w: _between(w, by_width, table.source, f"op {op}") for w in new}}
              for op, by_width in table.layers.items()}
    ins = sorted({i for i, _ in table.projections})
    outs = sorted({o for _, o in table.projections})
    projections = dict(table.projections)
    for i in [space.embedding_dim, *space.widths]:
        for o in [*space.widths, space.hidden_size]:
            if (i in new or o in new) and (i, o) not in projections:
                projections[(i, o)] = _projection(i, o, table.projections, ins, outs, table.source)
    widths_text = ", ".join(map(str, new))
    return replace(table, space=space, layers=layers, projections=projections,
                   source=f"{table.source} (widths {widths_text} interpolated)")


def with_ffn_ratio(table: LatencyTable, ffn_ratio: int) -> LatencyTable:
    """A copy of `table` priced for students whose feed-forward is ffn_ratio * w wide (each op scaled by its FLOPs)."""
    space = table.space
    if ffn_ratio == space.ffn_ratio:
        return table
    if not 0 < ffn_ratio < space.ffn_ratio:
        raise LatencyTableError(f"{table.source} prices FFN ratios from 1 to its own {space.ffn_ratio}, not "
                                f"{ffn_ratio}")

    def scaled(op: str, w: int, entry: Entry) -> Entry:
        spec = get_op(op)
        profiled = spec.flops(w, space.head_dim, space.ffn_ratio, space.seq_len)
        share = spec.flops(w, space.head_dim, ffn_ratio, space.seq_len) / profiled if profiled else 1.0
        return entry if share == 1.0 else Entry(entry.median_ms * share, entry.iqr_ms * share, 0)

    layers = {op: {w: scaled(op, w, e) for w, e in by_width.items()} for op, by_width in table.layers.items()}
    return replace(table, space=space.with_ffn_ratio(ffn_ratio), layers=layers,
                   source=f"{table.source} (FFN ratio {ffn_ratio} scaled)")


def _between(w: int, by_width: dict[int, Entry], source: str, what: str) -> Entry:
    return _line(w, sorted(by_width), by_width.__getitem__, source, what)


def _projection(i: int, o: int, known: dict[tuple[int, int], Entry], ins: list[int], outs: list[int],
                source: str) -> Entry:
    """in -> out: along `in` first (each side priced along `out` where the table lacks it), then along `out`."""
    def along_out(i_known: int) -> Entry:
        if (i_known, o) in known:
            return known[(i_known, o)]
        return _line(o, [x for x in outs if (i_known, x) in known], lambda x: known[(i_known, x)], source,
                     f"projection {i_known}->{o}")

    if i in ins:
        return along_out(i)
    return _line(i, ins, along_out, source, f"projection {i}->{o}")


def _line(w: int, grid: list[int], entry: Callable[[int], Entry], source: str, what: str) -> Entry:
    lower = [x for x in grid if x < w]
    upper = [x for x in grid if x > w]
    if not lower or not upper:
        raise LatencyTableError(f"{source} cannot price {what} at width {w}: it profiled widths "
                                f"{grid[0]}..{grid[-1]} and a width outside them is not extrapolated; profile it "
                                "with `nasbert latency profile --space`")
    lo, hi = lower[-1], upper[0]
    t = (w - lo) / (hi - lo)
    a, b = entry(lo), entry(hi)
    return Entry((1 - t) * a.median_ms + t * b.median_ms, (1 - t) * a.iqr_ms + t * b.iqr_ms, 0)
