"""Subcommands of `nasbert`: each module registers its commands with `nasbert.cli.command` on import.

Add a stage by adding a module here and one import line below.
"""

from nasbert.commands import info, train_supernet  # noqa: F401
from nasbert.commands import latency  # noqa: F401
