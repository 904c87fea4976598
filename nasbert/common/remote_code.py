"""Whose Python runs when a model folder loads: nasbert's own student classes, never a folder's code unless asked.

A Hugging Face folder may name Python files of its own in an `auto_map` (config.json, tokenizer_config.json);
`from_pretrained(..., trust_remote_code=True)` imports them, so loading a folder someone handed you can run their
code. nasbert passes `trust_remote_code` explicitly on every load (transformers would otherwise ask on stdin):

- a nasbert student (model_type `nasbert_student`, the auto_map nasbert writes) loads through the classes nasbert
  registers with the Auto classes, so its copied `modeling_nasbert.py` is never imported here;
- a folder without an auto_map needs no code of its own;
- any other auto_map is refused with one sentence unless the user passed `--trust-remote-code`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nasbert.errors import UserError

FLAG = "--trust-remote-code"
STUDENT_MODEL_TYPE = "nasbert_student"


def code_files(auto_map: Any) -> list[str]:
    """The Python files an auto_map names ("modeling_x.XModel" -> modeling_x.py; "repo--m.C" -> repo's m.py)."""
    refs = []
    for value in (auto_map.values() if isinstance(auto_map, dict) else []):
        refs += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    return sorted({ref.split("--")[-1].rsplit(".", 1)[0] + ".py" for ref in refs})


def is_nasbert_student(config: dict) -> bool:
    """A config nasbert wrote for a student: its model type, and an auto_map naming only nasbert's classes."""
    from nasbert.registration import auto_map

    own = auto_map()
    mapping = config.get("auto_map") or {}
    return (config.get("model_type") == STUDENT_MODEL_TYPE and isinstance(mapping, dict)
            and all(own.get(name) == ref for name, ref in mapping.items()))


def read_config(name_or_path: str | Path) -> dict:
    """config.json of a local folder or a hub model as a plain dict (reading it runs no code)."""
    from transformers import PretrainedConfig

    config, _ = PretrainedConfig.get_config_dict(str(name_or_path))
    return config


def trust_remote_code(name_or_path: str | Path, trusted: bool, what: str, config: dict | None = None) -> bool:
    """The `trust_remote_code` to pass when loading `name_or_path` (`config`: its config.json, if already read).

    False for a nasbert student (its classes are registered here) and for a folder without code of its own;
    True for a folder with code when the user passed --trust-remote-code (`trusted`); a UserError otherwise.
    """
    config = read_config(name_or_path) if config is None else config
    tokenizer_file = Path(name_or_path) / "tokenizer_config.json"
    tokenizer_map = None
    if tokenizer_file.is_file():
        try:
            tokenizer_map = json.loads(tokenizer_file.read_text()).get("auto_map")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            tokenizer_map = None  # a broken tokenizer file is the tokenizer loader's to report
    if is_nasbert_student(config) and not tokenizer_map:
        from nasbert.registration import register_auto_classes

        register_auto_classes()
        return False
    files = code_files(config.get("auto_map")) + code_files(tokenizer_map)
    if not files:
        return False
    if not trusted:
        raise UserError(f"{what} {name_or_path} carries its own Python code ({', '.join(sorted(set(files)))}, named "
                        f"by the auto_map of its config), which nasbert runs only when you pass {FLAG}")
    return True
