"""Subcommands of `nasbert`: each module registers its commands with `nasbert.commands.base.command` on import.

Add a stage by adding a module here and one import line below. A command module imports only light modules
at the top (config dataclasses, `base`); torch, transformers and datasets load inside its `run`, so that
`nasbert --help` starts at once (tests/test_cli.py checks both).
"""

from nasbert.commands import (  # noqa: F401
    baselines,
    compare,
    convert,
    distill,
    export,
    finetune,
    info,
    latency,
    quickstart,
    search,
    train_supernet,
)
