"""Checkpoints of long jobs: `checkpoints/step-N/`, written to a temporary folder, then renamed.

A folder is complete only if it carries `state.json` (written last, before the rename), so a checkpoint
cut off mid-write is never taken as the newest. The last `keep` complete checkpoints are kept.

Nothing in a checkpoint is a pickle, so a run folder someone hands you cannot run code when read:

    step-N/model.safetensors      the model's weights
    step-N/NAME.json              every other object (optimizer, scheduler, RNG states...): its structure in
    step-N/NAME.safetensors       JSON, its tensors in safetensors (the JSON names them; absent without tensors)
    step-N/state.json             counters (step, data position, shrink state), written last

The JSON keeps what plain JSON would lose: tuples, dicts with int keys (optimizer state), numpy arrays
(numpy's RNG state), numpy scalars and non-finite floats are tagged `{"$type": ...}`, so objects come back
exactly as saved and resume stays bit-exact. Folders of older versions hold `NAME.pt` pickles; they are
refused with a sentence pointing at `nasbert convert-checkpoint`, which the user runs deliberately.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from nasbert.errors import UserError

_STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "state.json"
MODEL_FILE = "model.safetensors"
PICKLE_SUFFIX = ".pt"  # objects as older versions wrote them; never read here
_TAG = "$type"
_NUMPY_KINDS = "biuf"  # numpy dtypes a checkpoint may hold: bool, signed and unsigned ints, floats


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
    """Write model weights, each object (JSON + safetensors) and `state.json`, atomically; prune old ones."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    # Cloned: tied weights share storage, which safetensors refuses; loading restores the tie.
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in model_state.items()}, str(tmp / MODEL_FILE))
    for name, value in objects.items():
        save_object(tmp, name, value)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in complete_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, object_names: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict]:
    """(model state, objects, state.json) of a complete checkpoint; a damaged or pickled one is a UserError."""
    path = Path(path)
    pickled = [name for name in object_names
               if not (path / f"{name}.json").is_file() and (path / f"{name}{PICKLE_SUFFIX}").is_file()]
    if pickled:
        raise UserError(f"checkpoint {path} was written by an older nasbert as pickles ({pickled[0]}"
                        f"{PICKLE_SUFFIX}), which can run code when loaded, so it is not read; if you trust "
                        f"whoever wrote it, convert it once with `nasbert convert-checkpoint {run_of(path)}`")
    try:
        state = json.loads((path / STATE_FILE).read_text())
        model_state = load_file(str(path / MODEL_FILE))
        objects = {name: load_object(path, name) for name in object_names}
    except Exception as error:  # noqa: BLE001 - any damage reads the same to the user
        raise UserError(f"checkpoint {path} is corrupt ({type(error).__name__}); delete that folder to resume "
                        f"from the one before it") from None
    return model_state, objects, state


def run_of(checkpoint: Path) -> Path:
    """The run folder of `RUN/checkpoints/step-N` (the checkpoint itself if it sits elsewhere)."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint


# ---- objects as JSON + safetensors ----------------------------------------------------------------------


def save_object(folder: Path, name: str, value: Any) -> None:
    """Write `value` as `name.json` (+ `name.safetensors` if it holds tensors); refuses types it cannot restore."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(value, tensors)
    if tensors:
        save_file(tensors, str(Path(folder) / f"{name}.safetensors"))
    (Path(folder) / f"{name}.json").write_text(json.dumps({"tensors": bool(tensors), "value": tree},
                                                          allow_nan=False))


def load_object(folder: Path, name: str) -> Any:
    """The object `save_object` wrote, rebuilt from JSON and safetensors only (no pickle, no code)."""
    data = json.loads((Path(folder) / f"{name}.json").read_text())
    if not isinstance(data, dict) or "value" not in data:
        raise ValueError(f"{name}.json is not a checkpoint object")
    tensors = load_file(str(Path(folder) / f"{name}.safetensors")) if data.get("tensors") else {}
    return _decode(data["value"], tensors)


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().clone().contiguous()  # cloned: safetensors refuses shared storage
        return {_TAG: "tensor", "key": key}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _NUMPY_KINDS:
            raise TypeError(f"a checkpoint cannot hold a numpy array of dtype {value.dtype}")
        return {_TAG: "ndarray", "dtype": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, np.generic):
        if value.dtype.kind not in _NUMPY_KINDS:
            raise TypeError(f"a checkpoint cannot hold a numpy scalar of dtype {value.dtype}")
        return {_TAG: "numpy", "dtype": value.dtype.str, "value": _encode(value.item(), tensors)}
    if isinstance(value, float) and not math.isfinite(value):
        return {_TAG: "float", "value": repr(value)}  # 'nan', 'inf', '-inf'
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [_encode(v, tensors) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and _TAG not in value:
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {_TAG: "dict", "items": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    raise TypeError(f"a checkpoint cannot hold a {type(value).__name__} (only tensors, numbers, strings, "
                    "lists, tuples, dicts and numpy arrays)")


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    kind = node.get(_TAG)
    if kind is None:
        return {k: _decode(v, tensors) for k, v in node.items()}
    if kind == "tensor":
        return tensors[node["key"]]
    if kind == "ndarray":
        dtype = _numpy_dtype(node["dtype"])
        return np.asarray(node["data"], dtype=dtype).reshape([int(n) for n in node["shape"]])
    if kind == "numpy":
        return _numpy_dtype(node["dtype"]).type(_decode(node["value"], tensors))
    if kind == "float":
        if node["value"] not in ("nan", "inf", "-inf"):
            raise ValueError(f"unknown float {node['value']!r}")
        return float(node["value"])
    if kind == "tuple":
        return tuple(_decode(v, tensors) for v in node["items"])
    if kind == "dict":
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in node["items"]}
    raise ValueError(f"unknown tag {kind!r}")


def _numpy_dtype(text: str) -> np.dtype:
    dtype = np.dtype(str(text))
    if dtype.kind not in _NUMPY_KINDS:
        raise ValueError(f"numpy dtype {text!r} is not allowed in a checkpoint")
    return dtype


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict)):
        raise ValueError("a dict key in a checkpoint must be a number, a string or a tuple")
    return key
