"""Subcommands of `nasbert`: each module registers its commands with `nasbert.cli.command` on import.

Add a stage by adding a module here and one import line below.
"""

from nasbert.commands import (  # noqa: F401
    finetune,
    info,
    latency,  # noqa: F401
    search,  # noqa: F401
    train_supernet,
)
