"""The `nasbert` command. Each stage registers a subcommand here; tools/*.py call the same functions.

    nasbert arch "256:M,F,S5,F,I,I/512:M,F,M,F,M,F/..."     # validate an arch, print its size
    nasbert space                                         # the search space and its size
"""

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


def command(name: str, help: str):
    """Register `run(args)` as subcommand `name`; the decorated function's `add_arguments` fills its parser."""
    def register(add_arguments: Callable[[argparse.ArgumentParser], None]):
        def attach(run: Callable[[argparse.Namespace], int | None]):
            COMMANDS[name] = (add_arguments, run, help)
            return run
        return attach
    return register


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


def _space_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", help="JSON file of SearchSpace fields (default: NAS-BERT's space)")


def _arch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arch", help="arch string, e.g. 256:M,F,S5,F,I,I/512:M,F,M,F,M,F/...")
    _space_arguments(parser)


@command("arch", "validate an arch string and print its parameters and FLOPs")(_arch_arguments)
def run_arch(args: argparse.Namespace) -> int:
    return arch_info(args.arch, load_space(args.space))


def arch_info(text: str, space: SearchSpace) -> int:
    arch = space.validate(text)
    print(f"arch        {arch}")
    print(f"layers      {arch.num_layers} (identities dropped)")
    print(f"params      {space.params(arch):,} (encoder and embeddings)")
    print(f"FLOPs       {space.flops(arch) / 1e9:.3f} G at batch 1 x seq {space.seq_len}")
    return 0


@command("space", "print the search space and how many architectures it holds")(_space_arguments)
def run_space(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    print(json.dumps(space.to_json(), indent=2))
    per_block = space.num_block_candidates()
    print(f"block candidates: {per_block:,}; whole models: {per_block:,}^{space.num_blocks} "
          f"= {float(per_block) ** space.num_blocks:.2e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nasbert", description="Compress a BERT-style teacher into small, fast "
                                     "task-agnostic students (NAS-BERT + ETD).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, run, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as error:
        print(f"nasbert {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
