"""The subcommand registry and helpers shared by every `nasbert` subcommand module (never imports cli.py).

Command modules stay light: they import config dataclasses and this module at the top, and the stage code
(torch, transformers, datasets) inside their `run`, so `nasbert --help` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from nasbert.errors import USER_ERRORS, UserError
from search_space import SearchSpace

Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None], str]
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator: register `run(args) -> exit code` as subcommand `name`, its flags added by `add_arguments`."""
    def attach(run: Callable[[argparse.Namespace], int | None]):
        COMMANDS[name] = (add_arguments, run, help)
        return run
    return attach


SPACE_HELP = ("the search space: a JSON file of SearchSpace fields, a train-supernet run folder or its config.json "
              "(default: NAS-BERT's space)")


def load_space(path: str | None) -> SearchSpace:
    """The default NAS-BERT space, or the one in a JSON file of SearchSpace fields, in a train-supernet run folder,
    or in its config.json (any JSON whose `space` key holds the fields, as a search.json's does)."""
    if path is None:
        return SearchSpace()
    file = Path(path) / "config.json" if Path(path).is_dir() else Path(path)
    try:
        data = json.loads(file.read_text())
        return SearchSpace.from_json(data["space"] if isinstance(data, dict) and "space" in data else data)
    except FileNotFoundError:
        if file != Path(path):
            raise UserError(f"{path} is a folder without config.json; give a space JSON, a run folder or its "
                            f"config.json") from None
        raise UserError(f"space file {path} does not exist") from None
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise UserError(f"space file {file} is not a valid search space: {error}") from None


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type, prefix: str = "", *,
                         exclude: Collection[str] = (), defaults: bool = True, title: str | None = None) -> None:
    """One flag per field of the dataclass `config_class` (transformers' HfArgumentParser, in small).

    The flag is `--{prefix}{name, - for _}`, or `--{metadata["flag"]}` where the field's metadata names one
    (then without the prefix); `metadata["positional"]` makes it an argument. Help (required), choices and
    metavar come from the metadata, the type from the annotation: `list[X]` takes one or more values, `bool`
    is a switch (`--no-NAME` where the field defaults to True). The field's default is shown in the help. With
    `defaults=False` a flag not given stays None, so something else (a config file) can fill the field.
    The fields go in a group titled `title` (if given), those a base dataclass declares (e.g. CorpusOptions) in
    a group titled by its docstring.
    """
    hints, groups = typing.get_type_hints(config_class), {}
    if title is not None:
        groups[config_class] = parser.add_argument_group(title)
    for f in dataclasses.fields(config_class):
        if f.name in exclude:
            continue
        owner = next(c for c in config_class.__mro__ if f.name in c.__dict__.get("__annotations__", {}))
        if owner not in groups and owner is not config_class:
            groups[owner] = parser.add_argument_group(owner.__doc__.strip().splitlines()[0])
        group, dest = groups.get(owner, parser), _dest(prefix, f.name)
        kind, many = _flag_type(hints[f.name])
        default = _field_default(f)
        name, help_text = f.metadata.get("flag", prefix + f.name.replace("_", "-")), f.metadata["help"]
        if not (default is None or default is dataclasses.MISSING or kind is bool or default in ("", [])
                or "default" in help_text):
            help_text += f" (default: {' '.join(map(str, default)) if many else default})"
        options = dict(help=help_text, default=default if defaults and default is not dataclasses.MISSING else None)
        if kind is bool:
            group.add_argument(f"--no-{name}" if default else f"--{name}", dest=dest, **options,
                               action="store_false" if default else "store_true")
            continue
        metavar = None if "choices" in f.metadata else name.upper().replace("-", "_")
        options.update(type=kind, nargs="+" if many else None, choices=f.metadata.get("choices"),
                       metavar=f.metadata.get("metavar", metavar))
        if f.metadata.get("positional"):
            group.add_argument(dest, **options)
        else:
            group.add_argument(f"--{name}", dest=dest, required=default is dataclasses.MISSING, **options)


def config_from_args(args: argparse.Namespace, config_class: type, prefix: str = "", **values: Any):
    """The dataclass from the flags `add_config_arguments` made (those not given: its defaults); `values` win."""
    return config_class(**{**given_values(args, config_class, prefix), **values})


def given_values(args: argparse.Namespace, config_class: type, prefix: str = "") -> dict[str, Any]:
    """The fields of `config_class` whose flag holds a value (not None) in `args`."""
    found = {f.name: getattr(args, _dest(prefix, f.name), None) for f in dataclasses.fields(config_class)}
    return {name: value for name, value in found.items() if value is not None}


def _dest(prefix: str, name: str) -> str:
    return prefix.replace("-", "_") + name


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _flag_type(hint: Any) -> tuple[type, bool]:
    """(value type, takes a list) of an annotation: `int | None` -> (int, False), `list[str] | None` -> (str, True)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nasbert", description="Compress a BERT-style teacher into small, fast "
                                     "task-agnostic students (NAS-BERT + ETD).")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, run, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler_=run)
    return parser


def run_command(argv: list[str] | None = None) -> int:
    """Parse argv with every registered subcommand and run it; a user error prints one line and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler_(args) or 0)
    except USER_ERRORS as error:
        print(f"nasbert {args.command}: error: {error}", file=sys.stderr)
        return 2
