"""`nasbert search RUN --latency-budget 20ms [10ms ...] [--params-budget 10M] --lut lut.json --output search.json`."""

from __future__ import annotations

import argparse
from pathlib import Path

from nasbert.commands.base import add_config_arguments, command, config_from_args
from nasbert.errors import UserError
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
    output = Path(config.output)
    check_output(output, args.run, config.lut, config.overwrite)
    lut = LatencyTable.load(config.lut) if config.lut else None
    loaded = load_run(args.run, config.device, config.teacher, config.trust_remote_code)
    outcome = search(loaded, config, lut)
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


def check_output(output: Path, run: str, lut: str | None, overwrite: bool) -> None:
    """search.json never replaces an input (the table, a file of the run) and replaces a file only when asked."""
    if lut and output.resolve() == Path(lut).resolve():
        raise UserError(f"--output {output} is the latency table; choose another file for the results")
    run_folder = Path(run).resolve()
    if output.resolve() == run_folder or (run_folder in output.resolve().parents and output.exists()):
        raise UserError(f"--output {output} is a file of the run {run}; choose another file for the results")
    if output.suffix.lower() == ".png":
        raise UserError(f"--output {output} is the plot's name; give the results a .json name (the plot goes beside "
                        "it)")
    if output.is_dir():
        raise UserError(f"--output {output} is a folder; give a file name such as {output / 'search.json'}")
    if output.exists() and not overwrite:
        raise UserError(f"--output {output} already exists; pass --overwrite to replace it or choose another file")
