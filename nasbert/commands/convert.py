"""`nasbert convert-checkpoint RUN_OR_CHECKPOINT_DIR`: rewrite an older run's pickled checkpoint objects.

Older versions stored optimizer, scheduler and RNG states as `NAME.pt` pickles; loading a pickle can run
any code it carries, so nasbert no longer reads them (resume, search and export refuse such folders). This
command is the one place that unpickles them, and only because the user named the folder: each `NAME.pt`
is loaded with `torch.load(weights_only=False)`, written as `NAME.json` + `NAME.safetensors`, then removed.

    nasbert convert-checkpoint runs/supernet            # every checkpoint of a run (or a refinement run)
    nasbert convert-checkpoint runs/supernet/checkpoints/step-400
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nasbert.commands.base import command
from nasbert.errors import UserError


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="RUN_OR_CHECKPOINT_DIR",
                        help="a run folder (all its checkpoints) or one checkpoints/step-N folder. This LOADS THE "
                             "OLD PICKLES, which can run any code they carry: convert only folders you trust")


@command("convert-checkpoint", "convert an older run's pickled checkpoints to the safe format (runs their "
         "pickles once: only for folders you trust)", _add_arguments)
def run_convert(args: argparse.Namespace) -> int:
    from nasbert.common.checkpoint import PICKLE_SUFFIX  # the stage code loads inside run: `--help` stays fast

    folders = checkpoint_folders(Path(args.path))
    converted = 0
    for folder in folders:
        for pickled in sorted(folder.glob(f"*{PICKLE_SUFFIX}")):
            convert_object(pickled)
            converted += 1
    if not converted:
        print(f"nothing to convert: {args.path} holds no pickled checkpoint objects")
        return 0
    print(f"converted {converted} object(s) in {len(folders)} checkpoint(s) of {args.path}; resume it as usual")
    return 0


def checkpoint_folders(path: Path) -> list[Path]:
    """The checkpoint folders `path` names: itself (it holds state.json), or every complete one of a run."""
    from nasbert.common.checkpoint import STATE_FILE, complete_checkpoints

    if (path / STATE_FILE).is_file():
        return [path]
    run = path.parent if path.name == "checkpoints" else path
    found = complete_checkpoints(run)
    if not found:
        raise UserError(f"{path} is neither a run folder with checkpoints nor a checkpoints/step-N folder")
    return found


def convert_object(pickled: Path) -> None:
    """Unpickle `NAME.pt` (the user asked for it), write it as NAME.json + NAME.safetensors, remove the pickle."""
    import torch

    from nasbert.common.checkpoint import PICKLE_SUFFIX, save_object

    try:
        value = torch.load(pickled, map_location="cpu", weights_only=False)  # deliberate: see the module docstring
    except Exception as error:  # noqa: BLE001 - any damage reads the same to the user
        raise UserError(f"{pickled} could not be read ({type(error).__name__}); it is not a checkpoint object "
                        f"nasbert wrote") from None
    name = pickled.name[:-len(PICKLE_SUFFIX)]
    try:
        save_object(pickled.parent, name, value)
    except TypeError as error:
        raise UserError(f"{pickled} holds something a safe checkpoint cannot ({error})") from None
    pickled.unlink()
