"""Every registered recipe, imported once so that `RECIPES` is complete (a new recipe adds its import here)."""

from nasbert.finetune.distill import ernie_tiny, kd, pkd, skd, tinybert, xtremedistil  # noqa: F401
from nasbert.finetune.distill.registry import RECIPES

# The order of --help, the README and the benchmark: simplest first.
for _name in ("kd", "pkd-skip", "pkd-last", "tinybert", "skd", "ernie-tiny", "xtremedistil"):
    RECIPES[_name] = RECIPES.pop(_name)

__all__ = ["RECIPES"]
