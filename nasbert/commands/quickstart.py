"""`nasbert quickstart --output DIR`: the whole pipeline at toy scale in a few minutes on a CPU."""

from __future__ import annotations

import argparse

from nasbert.commands.base import command, run_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="folder for everything the quickstart makes")
    parser.add_argument("--fast", action="store_true", help="fewer steps and timings everywhere (what CI runs)")


@command("quickstart", "run the whole pipeline on a generated teacher and corpus (no network, minutes)",
         add_arguments)
def run(args: argparse.Namespace) -> int:
    from nasbert.quickstart.run import quickstart

    quickstart(args.output, run_command, fast=args.fast)
    return 0
