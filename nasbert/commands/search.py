"""`nasbert search RUN --latency-budget 20ms [10ms ...] [--params-budget 10M] --lut lut.json --output search.json`."""

from __future__ import annotations

import argparse
from pathlib import Path

from nasbert.commands.base import command
from nasbert.errors import UserError
from nasbert.latency.lut import LatencyTable
from nasbert.search.budget import parse_latency_ms, parse_params
from nasbert.search.select import format_table, plot_pareto, search, write_results
from nasbert.train_supernet.run import load_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a train-supernet run folder (with block_losses.json)")
    parser.add_argument("--latency-budget", nargs="+", default=[], metavar="BUDGET",
                        help="one or more latency budgets with units: 20ms, 0.02s")
    parser.add_argument("--params-budget", metavar="COUNT", help="a parameter budget: 10M, 500k (with every latency "
                        "budget, or alone)")
    parser.add_argument("--lut", help="latency table of the target device (`nasbert latency profile`)")
    parser.add_argument("--top-k", type=int, default=100, help="candidates per budget re-checked as whole models")
    parser.add_argument("--recheck-batches", type=int, default=4, help="dev batches for the re-check (0: skip it)")
    parser.add_argument("--measure", type=int, default=3, metavar="N",
                        help="time up to N leaders per latency budget end to end (when the table is for this "
                             "machine and settings) and make the best-ranked one that fits the winner; 0: trust "
                             "the table (default 3)")
    parser.add_argument("--allow-attention-free", action="store_true",
                        help="let students without any attention layer compete (by default every student has at "
                             "least one: without it a [CLS]-pooled head sees only a convolution's local window)")
    parser.add_argument("--weight-students", type=int, default=200, metavar="S",
                        help="fit a weight per block of the approximated loss on S random students re-checked "
                             "chained (default 200); 0, or --recheck-batches 0: NAS-BERT's plain sum of block losses")
    parser.add_argument("--output", default="search.json", help="results file (a Pareto plot is written beside it)")
    parser.add_argument("--device", default="cpu", help="device for the re-check: cpu or cuda")


@command("search", "pick the best students under latency / params budgets", add_arguments)
def run(args: argparse.Namespace) -> int:
    latency_budgets = [parse_latency_ms(b) for b in args.latency_budget]
    params_budget = parse_params(args.params_budget) if args.params_budget else None
    if not latency_budgets and params_budget is None:
        raise UserError("give at least one budget: --latency-budget 20ms and/or --params-budget 10M")
    if args.top_k <= 0:
        raise UserError("--top-k must be positive")
    if args.measure < 0:
        raise UserError("--measure must be 0 or more")
    if args.weight_students < 0:
        raise UserError("--weight-students must be 0 or more")
    budgets = [(b, params_budget) for b in latency_budgets] or [(None, params_budget)]
    lut = LatencyTable.load(args.lut) if args.lut else None
    loaded = load_run(args.run, args.device)
    outcome = search(loaded, budgets, lut, args.top_k, args.recheck_batches, args.measure,
                     require_attention=not args.allow_attention_free, weight_students=args.weight_students)
    output = Path(args.output)
    write_results(outcome.results, loaded, lut, args.lut, output, outcome.block_weights)
    if outcome.block_weights is not None:
        print(outcome.block_weights.describe())
    print(format_table(outcome.results))
    if lut is not None:
        plot = plot_pareto(outcome.results, outcome.tables, outcome.structure, output.with_suffix(".png"))
        print(f"wrote {output} and {plot}")
    else:
        print(f"wrote {output}")
    return 0
