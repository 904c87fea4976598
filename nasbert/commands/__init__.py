"""Subcommands of `nasbert`: each module registers its commands with `nasbert.cli.command` on import.

Add a stage by adding a module here and one import line below.
"""

from nasbert.commands import convert, export, finetune, info, latency, quickstart, search, train_supernet  # noqa: F401
