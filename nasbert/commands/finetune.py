"""`nasbert finetune DIR --train-file F --validation-file F [...]`: the HF Trainer on a GLUE-style task."""

from __future__ import annotations

import argparse

from nasbert.commands.base import add_config_arguments, command, config_from_args
from nasbert.finetune.config import FinetuneConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, FinetuneConfig)


@command("finetune", "fine-tune a student (or a teacher) on a sentence(-pair) task, optionally with KD", add_arguments)
def run(args: argparse.Namespace) -> int:
    import nasbert
    from nasbert.finetune.trainer import finetune

    nasbert.register_auto_classes()  # the student's classes come from nasbert, not from the folder's code copy
    finetune(config_from_args(args, FinetuneConfig))
    return 0
