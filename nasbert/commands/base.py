"""The subcommand registry and helpers shared by every `nasbert` subcommand module (never imports cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from nasbert.errors import USER_ERRORS, UserError
from search_space import SearchSpace

Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None], str]
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator: register `run(args) -> exit code` as subcommand `name`, its flags added by `add_arguments`."""
    def attach(run: Callable[[argparse.Namespace], int | None]):
        COMMANDS[name] = (add_arguments, run, help)
        return run
    return attach


def load_space(path: str | None) -> SearchSpace:
    """The default NAS-BERT space, or one from a JSON file of SearchSpace fields."""
    if path is None:
        return SearchSpace()
    try:
        return SearchSpace.from_json(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise UserError(f"space file {path} does not exist") from None
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise UserError(f"space file {path} is not a valid search space: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nasbert", description="Compress a BERT-style teacher into small, fast "
                                     "task-agnostic students (NAS-BERT + ETD).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, run, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler_=run)
    return parser


def run_command(argv: list[str] | None = None) -> int:
    """Parse argv with every registered subcommand and run it; a user error prints one line and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler_(args) or 0)
    except USER_ERRORS as error:
        print(f"nasbert {args.command}: error: {error}", file=sys.stderr)
        return 2
