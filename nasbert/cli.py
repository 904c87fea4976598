"""The `nasbert` command; `python tools/X.py` is `nasbert X`.

Subcommands live in nasbert/commands/, one module per stage, and register themselves with `@command` from
nasbert/commands/base.py, which also builds the parser and dispatches. Only light modules load before a
command runs: `nasbert --help` takes a fraction of a second.
"""

from __future__ import annotations

import sys

import nasbert.commands  # noqa: F401  (registers every subcommand)
from nasbert.commands.base import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(argv)


if __name__ == "__main__":
    sys.exit(main())
