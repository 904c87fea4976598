"""`nasbert baselines RUN --latency-budget 20ms [...] --lut LUT --output DIR [--families depth,width,uniform]
[--refine-steps N --train-file F ...]`: per budget, the best-fitting depth-pruned, width-pruned and uniform
student, exported and refined as `nasbert export` would a searched one (its flags)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from nasbert.baselines.config import BaselinesConfig
from nasbert.commands.base import add_config_arguments, command, config_from_args
from nasbert.commands.export import export_options
from nasbert.errors import UserError
from nasbert.export.config import ExportOptions, RefineConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, BaselinesConfig)
    add_config_arguments(parser, ExportOptions, exclude=("init", "refine", "teacher_layers", "ffn_ratio", "lut"),
                         title="export (as nasbert export; each family has its own --init)")
    parser.add_argument("--refine-steps", type=int, default=0, help="distillation steps from the teacher after "
                        "inheriting, as for a searched student (default 0: none; needs --train-file)")
    add_config_arguments(parser, RefineConfig, "refine-", exclude=("steps", "output", "seed", "device", "resume"),
                         title="refinement (with --refine-steps)")


@command("baselines", "per latency budget, the best-fitting depth-pruned, width-pruned and uniform student, "
         "exported and refined like a searched one", add_arguments)
def run(args: argparse.Namespace) -> int:
    import nasbert
    from nasbert.baselines.run import run_baselines
    from nasbert.common.distributed import cleanup_distributed
    from nasbert.train_supernet.run import load_run

    nasbert.register_auto_classes()
    config = config_from_args(args, BaselinesConfig)
    output, run_folder = Path(config.output).resolve(), Path(config.run).resolve()
    if output == run_folder or run_folder in output.parents:
        raise UserError(f"--output {config.output} is the run folder or inside it; choose a folder outside the run")
    options = replace(export_options(args), lut=config.lut)
    loaded = load_run(config.run, config.device, options.teacher, options.trust_remote_code)
    try:
        rows = run_baselines(loaded, config, options)
    finally:
        cleanup_distributed()
    chosen = [row["folder"] for row in rows if row["folder"]]
    print(f"wrote {Path(config.output) / 'baselines.json'} ({len(chosen)} of {len(rows)} baselines exported)")
    if chosen:
        print(f"compare them with: nasbert compare --baselines {config.output} --train-file train.tsv "
              "--validation-file dev.tsv --output compare")
    return 0
