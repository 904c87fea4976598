"""Checkpoints of long jobs: `checkpoints/step-N/`, written to a temporary folder, then renamed.

A folder is complete only if it carries `state.json` (written last, before the rename), so a checkpoint
cut off mid-write is never taken as the newest. The last `keep` complete checkpoints are kept.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nasbert.errors import UserError

_STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and path.is_dir() and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def newest_checkpoint(run_dir: Path) -> Path | None:
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: Path, step: int, model_state: dict[str, torch.Tensor], objects: dict[str, Any],
                    state: dict[str, Any], keep: int = 3) -> Path:
    """Write model weights (safetensors), torch objects (`name.pt`) and `state.json`, atomically; prune old ones."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    # Cloned: tied weights share storage, which safetensors refuses; loading restores the tie.
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in model_state.items()}, str(tmp / MODEL_FILE))
    for name, value in objects.items():
        torch.save(value, tmp / f"{name}.pt")
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in complete_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, object_names: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict]:
    """(model state, torch objects, state.json) of a complete checkpoint; a damaged one is a UserError."""
    try:
        state = json.loads((path / STATE_FILE).read_text())
        model_state = load_file(str(path / MODEL_FILE))
        objects = {name: torch.load(path / f"{name}.pt", weights_only=False) for name in object_names}
    except Exception as error:  # noqa: BLE001 - any damage reads the same to the user
        raise UserError(f"checkpoint {path} is corrupt ({type(error).__name__}); delete that folder to resume "
                        f"from the one before it") from None
    return model_state, objects, state
