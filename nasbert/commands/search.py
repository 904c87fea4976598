"""`nasbert search RUN --latency-budget 20ms [10ms ...] [--params-budget 10M] --lut lut.json --output search.json`."""

from __future__ import annotations

import argparse
from pathlib import Path

from nasbert.commands.base import add_config_arguments, command, config_from_args
from nasbert.search.config import SearchConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a train-supernet run folder (with block_losses.json)")
    add_config_arguments(parser, SearchConfig)


@command("search", "pick the best students under latency / params budgets", add_arguments)
def run(args: argparse.Namespace) -> int:
    from nasbert.latency.lut import LatencyTable
    from nasbert.search.select import format_table, plot_pareto, search, write_results
    from nasbert.train_supernet.run import load_run

    config = config_from_args(args, SearchConfig)
    lut = LatencyTable.load(config.lut) if config.lut else None
    loaded = load_run(args.run, config.device)
    outcome = search(loaded, config, lut)
    output = Path(config.output)
    write_results(outcome.results, loaded, lut, config.lut, output, outcome.block_weights)
    if outcome.block_weights is not None:
        print(outcome.block_weights.describe())
    print(format_table(outcome.results))
    if lut is not None:
        plot = plot_pareto(outcome.results, outcome.tables, outcome.structure, output.with_suffix(".png"))
        print(f"wrote {output} and {plot}")
    else:
        print(f"wrote {output}")
    return 0
