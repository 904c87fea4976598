"""A distill run's progress and output: the student after each stage (resume), the finished folder.

OUTPUT.partial/state/ holds the student (save_pretrained) and projections.safetensors after the last finished
stage, OUTPUT.partial/progress.json the settings and the stage history; both are written aside and swapped in,
so a run killed while saving still has the previous stage's. The finished folder gets the fine-tune's files and
distill_args.json, stages.json (and skd_teachers.json); the progress files go.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from torch import nn

from nasbert.finetune.distill.job import Job
from nasbert.finetune.models import copy_code_files

STATE, PROGRESS, BEST = "state", "progress.json", "best.safetensors"


def read_progress(staging: Path) -> dict[str, Any] | None:
    try:
        progress = json.loads((staging / PROGRESS).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return progress if progress.get("history") and (staging / STATE).is_dir() else None


def save_progress(job: Job, staging: Path, history: list, settings: dict) -> None:
    """The student, the projections and the history after a stage: written aside, then swapped in."""
    from safetensors.torch import save_file

    fresh = staging / (STATE + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    job.student.save_pretrained(fresh)
    tensors = {k: v.detach().cpu().contiguous() for k, v in job.projections.state_dict().items()}
    if tensors:
        save_file(tensors, fresh / "projections.safetensors")
    shutil.rmtree(staging / STATE, ignore_errors=True)
    fresh.rename(staging / STATE)
    record = {"settings": settings, "history": history, "head": job.head, "best_loss": getattr(job, "best_loss", None)}
    (staging / (PROGRESS + ".new")).write_text(json.dumps(record, indent=2) + "\n")
    (staging / (PROGRESS + ".new")).replace(staging / PROGRESS)


def load_state(job: Job, state: Path, history: list) -> None:
    """The student and projections saved after the last finished stage."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    progress = json.loads((state.parent / PROGRESS).read_text())
    job.head = progress["head"]
    job.best_loss = progress.get("best_loss")
    job.set_student(AutoModelForSequenceClassification.from_pretrained(state))  # nasbert's classes
    if (state / "projections.safetensors").is_file():
        tensors = load_file(state / "projections.safetensors")
        for key in sorted({k.rsplit(".", 1)[0] for k in tensors}):
            weight = tensors[f"{key}.weight"]
            job.projections[key] = nn.Linear(weight.shape[1], weight.shape[0])
        job.projections.load_state_dict(tensors)
    basis = progress["settings"]
    job.team_probabilities, job.team_basis = basis.get("team_probabilities"), basis.get("team_basis") or {}


def write_output(job: Job, staging: Path, output: Path, history: list, settings: dict, eval_metrics: dict) -> None:
    """The fine-tune's files (model, tokenizer, code, eval/train results) + distill_args, stages, skd_teachers."""
    job.student.save_pretrained(staging)
    job.tokenizer.save_pretrained(staging)
    copy_code_files(job.model_dir, staging)
    train_results = {"train_loss_" + e["stage"]: e["train_loss"] for e in history}
    train_results.update(train_samples=len(job.train["task"]), train_wall_s=sum(e["wall_s"] for e in history))
    files = {"eval_results": eval_metrics, "train_results": train_results, "distill_args": settings,
             "stages": history}
    drawn = [e for e in history if "drawn" in e]
    if drawn:
        files["skd_teachers"] = {"team": job.teacher_names["team"], "probabilities": job.team_probabilities,
                                 "sampling": job.config.skd_sampling, "seed": job.config.seed,
                                 "sequence": drawn[-1]["drawn"], "counts": drawn[-1]["drawn_counts"]}
    for name, values in files.items():
        (staging / f"{name}.json").write_text(json.dumps(values, indent=2) + "\n")
    for leftover in (STATE, PROGRESS, BEST):
        path = staging / leftover
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    output.mkdir(exist_ok=True)  # held (and made) by this process, empty but for the lock
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == "config.json"):  # config.json last
        entry.rename(output / entry.name)
    staging.rmdir()
