"""`nasbert distill STUDENT --teacher FT_TEACHER --train-file F --validation-file F --recipe R [...]`: task
distillation (kd, pkd-skip, pkd-last, tinybert, skd, ernie-tiny, xtremedistil) on the HF Trainer, and
`nasbert layer-map-search`: a genetic search for the student -> teacher layer map."""

from __future__ import annotations

import argparse

from nasbert.commands.base import add_config_arguments, command, config_from_args
from nasbert.finetune.distill.config import NOT_FOR_SEARCH, SEARCH_ONLY, DistillConfig, LayerMapSearchConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, DistillConfig)


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, LayerMapSearchConfig, exclude=NOT_FOR_SEARCH)


@command("distill", "distil a student on a task from fine-tuned teachers with a recipe (kd, pkd-skip, pkd-last, "
         "tinybert, skd, ernie-tiny, xtremedistil)", add_arguments)
def run(args: argparse.Namespace) -> int:
    import nasbert
    from nasbert.finetune.distill.run import distill

    nasbert.register_auto_classes()  # the student's classes come from nasbert, not from the folder's code copy
    distill(config_from_args(args, DistillConfig))
    return 0


@command("layer-map-search", "search the student -> teacher layer map with a genetic algorithm and a short proxy "
         "distillation; `distill --layer-map OUTPUT` uses the best", add_search_arguments)
def run_search(args: argparse.Namespace) -> int:
    import nasbert
    from nasbert.finetune.distill.search import layer_map_search

    nasbert.register_auto_classes()
    assert all(name not in NOT_FOR_SEARCH for name in SEARCH_ONLY)
    layer_map_search(config_from_args(args, LayerMapSearchConfig))
    return 0
