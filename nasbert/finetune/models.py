"""Loading the student, its tokenizer and a fine-tuned teacher; copying code files beside the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nasbert.common.remote_code import trust_remote_code
from nasbert.errors import UserError
from nasbert.finetune.config import WEIGHT_FILES, Task


def check_model_folder(folder: str, role: str) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"{role} folder {path} does not exist (give a student folder or a Hugging Face model folder)")
    if not (path / "config.json").is_file():
        raise UserError(f"no model in {role} folder {path}: config.json is missing")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise UserError(f"no model weights in {role} folder {path} (expected model.safetensors)")
    return path


def load_tokenizer(folder: Path, role: str, trusted: bool = False):
    """The folder's tokenizer; a folder's own code runs only when `trusted` (--trust-remote-code)."""
    from transformers import AutoTokenizer

    trust = _trust(folder, role, trusted)
    try:  # AutoTokenizer may read config.json too, whose AutoConfig may be the folder's own code
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
    except (OSError, ValueError, TypeError) as error:
        raise UserError(f"no usable tokenizer in {role} folder {folder} ({str(error).splitlines()[0][:200]}); "
                        "save one there with tokenizer.save_pretrained") from None


def label_maps(task: Task) -> dict[str, Any]:
    """from_pretrained / config keyword arguments that make the head fit the task."""
    if task.regression:
        return dict(num_labels=1, problem_type="regression")
    return dict(num_labels=task.num_labels, problem_type="single_label_classification",
                id2label=dict(enumerate(task.labels)), label2id={name: i for i, name in enumerate(task.labels)})


def _trust(folder: Path, role: str, trusted: bool) -> bool:
    """trust_remote_code for this folder: nasbert's students load through the registered classes, any other
    folder's code runs only with --trust-remote-code (else a UserError)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"the config.json of {role} folder {folder} is not readable JSON") from None
    if not isinstance(config, dict):
        raise UserError(f"the config.json of {role} folder {folder} does not describe a model")
    return trust_remote_code(folder, trusted, f"{role} folder", config)


def load_student(folder: Path, task: Task, trusted: bool = False):
    """The model to fine-tune; a head of another size (or none) is replaced by a fresh one of the task's size."""
    from transformers import AutoModelForSequenceClassification

    trust = _trust(folder, "model", trusted)
    try:
        return AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=trust,
                                                                  ignore_mismatched_sizes=True, **label_maps(task))
    except Exception as error:  # noqa: BLE001 - truncated weights, a config that does not build: the folder's fault
        message = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise UserError(f"the model in {folder} does not load as a classifier ({message})") from None


def load_fine_tuned(folder: Path, trusted: bool = False):
    """A finished fine-tune (a `nasbert finetune` output) as it is, head and labels included, in eval mode."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=_trust(folder, "fine-tuned",
                                                                                               trusted)).eval()


def load_task_teacher(folder: Path, task: Task, tokenizer, trusted: bool = False):
    """A frozen fine-tuned teacher for the task: same vocabulary, a trained head of the task's size and labels."""
    from transformers import AutoModelForSequenceClassification

    teacher_tokenizer = load_tokenizer(folder, "teacher", trusted)
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise UserError(f"teacher {folder} has a different tokenizer vocabulary from the model's; KD compares "
                        "logits on the same tokens, so use a teacher the student was compressed from")
    try:
        teacher, info = AutoModelForSequenceClassification.from_pretrained(
            folder, trust_remote_code=_trust(folder, "teacher", trusted), output_loading_info=True)
    except RuntimeError as error:  # e.g. a head whose weights do not fit its config
        raise UserError(f"teacher {folder} does not load as a classifier: {str(error).splitlines()[0]}") from None
    if teacher.config.num_labels != task.num_labels or info["missing_keys"] or info["mismatched_keys"]:
        raise UserError(f"teacher {folder} has no trained {task.num_labels}-label head for this task; fine-tune it "
                        f"first: nasbert finetune {folder} --train-file ... --validation-file ...")
    if not task.regression:
        names = [teacher.config.id2label[i] for i in range(task.num_labels)]
        if names != task.labels and names != [f"LABEL_{i}" for i in range(task.num_labels)]:
            raise UserError(f"teacher {folder} was fine-tuned with labels {names}, this task has {task.labels}")
    return teacher.eval().requires_grad_(False)


def copy_code_files(source: Path, destination: Path) -> list[str]:
    """Copy the remote-code .py files of `source` (those its auto_map names, and their siblings) if missing.

    With nasbert imported, the library classes are used and save_pretrained writes no code; the folder must
    still load with trust_remote_code where nasbert is not installed.
    """
    auto_map = json.loads((source / "config.json").read_text()).get("auto_map")
    if not auto_map:
        return []
    copied = []
    for file in sorted(source.glob("*.py")):
        if not (destination / file.name).exists():
            shutil.copyfile(file, destination / file.name)
            copied.append(file.name)
    saved = json.loads((destination / "config.json").read_text())
    if saved.get("auto_map") != auto_map:  # keep every Auto class of the source, not only the one used here
        saved["auto_map"] = auto_map
        (destination / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    return copied
