"""`nasbert train-supernet`: flags (or a YAML/JSON file of the same names) -> TrainConfig -> train_supernet."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from nasbert.commands.base import command
from nasbert.errors import UserError
from nasbert.train_supernet.config import INITS, TrainConfig
from nasbert.train_supernet.recipe import train_supernet

_HELP = {
    "teacher": "teacher model folder or hub name (any BERT-like encoder; an MLM head is not needed)",
    "train_files": "training corpus: .txt (one text per line), .jsonl/.json or .csv/.tsv with --text-column",
    "output": "the run folder (config, checkpoints, tensorboard, metrics)",
    "validation_files": "dev corpus for block losses (default: --validation-fraction of the training corpus)",
    "num_blocks": "student blocks; must divide the teacher's layers (default 4, or the largest divisor below)",
    "widths": "block widths of the space (default NAS-BERT's 128..512, those up to the teacher's hidden size)",
    "init": "supernet initialisation: random, etd-impt (teacher weights by importance) or etd-rand",
    "batch_size": "sequences per optimizer step, over all processes and accumulation steps",
    "max_steps": "optimizer steps (default: --epochs over the corpus)",
    "mlm_probability": "mask this share of the teacher's input tokens (0 = no masking; BERT uses 0.15)",
    "chained_inputs": "share of steps whose blocks take the student's own upstream output instead of the "
                      "teacher's (0 = NAS-BERT; makes the sum of block losses track chained students better)",
    "resume": "continue the run in --output from its newest complete checkpoint",
    "device": "auto, cpu or cuda",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML or JSON file of options (names as the flags, with _); flags win")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "train_files":
            parser.add_argument("--train-file", dest="train_files", nargs="+", help=_HELP[f.name])
        elif f.name == "validation_files":
            parser.add_argument("--validation-file", dest="validation_files", nargs="+", help=_HELP[f.name])
        elif f.name == "widths":
            parser.add_argument(flag, type=int, nargs="+", help=_HELP[f.name])
        elif f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", default=None, help=_HELP.get(f.name))
        elif f.name == "init":
            parser.add_argument(flag, choices=INITS, help=_HELP[f.name])
        else:
            kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, help=_HELP.get(f.name))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {}
    if args.config:
        path = Path(args.config)
        if not path.exists():
            raise UserError(f"config file {path} does not exist")
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                values = yaml.safe_load(text) or {}
            else:
                values = json.loads(text)
        except Exception as error:  # noqa: BLE001
            raise UserError(f"config file {path} cannot be parsed ({type(error).__name__})") from None
        if not isinstance(values, dict):
            raise UserError(f"config file {path} must hold a mapping of option names to values")
        values = values.get("train", values)  # a run's own config.json works too
    for f in fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return TrainConfig.from_dict(values)


@command("train-supernet", "train the weight-sharing supernet by block-wise distillation from a teacher",
         add_arguments)
def run(args: argparse.Namespace) -> int:
    run_dir = train_supernet(config_from_args(args))
    print(f"supernet run in {run_dir}")
    return 0
