"""`nasbert compare (--students DIR ... | --baselines DIR) --teacher T --train-file F --validation-file F
--output DIR [--seeds 3] [--recipe R] [...]`: every student and the teacher fine-tuned (or distilled) on the task
with the same settings, timed side by side; a table and a plot of score against measured latency."""

from __future__ import annotations

import argparse

from nasbert.baselines.config import CompareConfig
from nasbert.commands.base import add_config_arguments, command, config_from_args, given_values
from nasbert.finetune.distill.config import DistillConfig

# DistillConfig fields that compare sets itself (per model and seed) or that mean something else here.
NOT_TASK_FLAGS = ("model", "output", "seed", "teacher", "recipe", "until_stage", "resume")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, CompareConfig)
    add_config_arguments(parser, DistillConfig, exclude=NOT_TASK_FLAGS,
                         title="the task and its training (as nasbert finetune / distill; the same for every model)")


@command("compare", "fine-tune students and their teacher on a task with the same settings, time them side by "
         "side, and tabulate and plot score against measured latency", add_arguments)
def run(args: argparse.Namespace) -> int:
    import nasbert
    from nasbert.baselines.compare import compare

    nasbert.register_auto_classes()
    config = config_from_args(args, CompareConfig)
    task_values = {k: v for k, v in given_values(args, DistillConfig).items() if k not in NOT_TASK_FLAGS}
    compare(config, task_values)
    return 0
