"""`nasbert train-supernet`: flags (or a YAML/JSON file of the same names) -> TrainConfig -> train_supernet."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasbert.commands.base import add_config_arguments, command, given_values
from nasbert.errors import UserError
from nasbert.train_supernet.config import TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML or JSON file of options (names as the flags, with _; a run's own "
                        "config.json works too); flags given win")
    add_config_arguments(parser, TrainConfig, defaults=False)  # not given: the --config file's, else TrainConfig's


def train_config(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from the --config file (if any) with the flags given on top."""
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
    return TrainConfig.from_dict({**values, **given_values(args, TrainConfig)})


@command("train-supernet", "train the weight-sharing supernet by block-wise distillation from a teacher",
         add_arguments)
def run(args: argparse.Namespace) -> int:
    from nasbert.train_supernet.recipe import train_supernet

    run_dir = train_supernet(train_config(args))
    print(f"supernet run in {run_dir}")
    return 0
