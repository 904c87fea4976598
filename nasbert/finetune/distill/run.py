"""`nasbert distill`: run a recipe's stages on the Hugging Face Trainer and write the student folder.

    nasbert distill students/s8 --teacher ft/teacher --train-file sst2/train.tsv --validation-file sst2/dev.tsv \\
        --recipe pkd-skip --output distilled/s8-pkd

Each stage is one Trainer run (run_stage): its data, teacher and TASK_LOSSES, its trainable units, evaluation
of the head each epoch with the best epoch kept where the stage ends a recipe. Before and after a stage its
loss is measured on a fixed batch of its data with dropout off (`probe_before` / `probe_after` in
stages.json), so "the stage lowered its own loss" can be read off. The output folder holds what
`nasbert finetune` writes (model, tokenizer, code files, eval_results.json, train_results.json, tensorboard/)
plus distill_args.json (every option, the resolved layer map, the stage list), stages.json (the stage
history) and, for skd, skd_teachers.json (the teacher drawn at each step).

Resumable by stage: after each stage the student (and the learned projections) are saved in
OUTPUT.partial/state/; `--until-stage NAME` stops there on purpose, `--resume` continues from the last finished
stage with the same options (a changed option is refused). Stage i is seeded with --seed + i, so a resumed
run ends where an uninterrupted one does. A run stopped inside a stage repeats that stage.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasbert.common.recipe import hold_folder
from nasbert.errors import UserError
from nasbert.finetune.distill.config import DistillConfig, check_distill_config, with_recipe_defaults
from nasbert.finetune.distill.job import Job, load_job
from nasbert.finetune.distill.layer_map import format_layer_map
from nasbert.finetune.distill.progress import BEST, STATE, load_state, read_progress, save_progress, write_output
from nasbert.finetune.distill.registry import Stage
from nasbert.finetune.distill.trainer import PROJECTIONS, StagePlan, distill_trainer_class
from nasbert.finetune.metrics import metrics_function
from nasbert.finetune.models import label_maps, load_student
from nasbert.finetune.trainer import (
    check_config,
    environment_set,
    format_metrics,
    training_arguments,
    warn_if_stalled,
)
from nasbert.finetune.trainer import output_folder as finetune_output_folder

PROBE_ROWS = 32
NOT_SETTINGS = ("resume", "until_stage", "output")  # options a resumed run may change


def distill(config: DistillConfig) -> dict[str, float]:
    """Run `config.recipe` on `config.model`, write the output folder; return the final validation metrics."""
    config, recipe = with_recipe_defaults(config)
    check_config(config)
    check_distill_config(config)
    output = output_folder(config)
    main = int(os.environ.get("RANK", "0")) == 0
    with hold_folder(output, "distill", enabled=main):  # one writer; a folder it made and left empty goes
        output_folder(config)  # still empty, now that no other run can write it
        return _distill(config, output, main)


def output_folder(config: DistillConfig) -> Path:
    return finetune_output_folder(config, "-distilled", "distillation")


def _distill(config: DistillConfig, output: Path, main: bool) -> dict[str, float]:
    staging = output.with_name(output.name + ".partial")
    progress = read_progress(staging)
    if progress and not config.resume:
        raise UserError(f"{staging} holds an unfinished distill run ({len(progress['history'])} stage(s) done); "
                        f"continue it with --resume, or remove {staging} to start over")
    if config.resume and not progress:
        raise UserError(f"--resume: {staging} holds no unfinished distill run to continue")
    if main and not progress:
        shutil.rmtree(staging, ignore_errors=True)  # left by a run that failed before its first stage ended
    job = load_job(config, config_recipe(config))
    job.work = staging
    names = [stage.name for stage in job.stages]
    if config.until_stage is not None and config.until_stage not in names:
        raise UserError(f"--until-stage {config.until_stage} is not a stage of {config.recipe}; its stages are "
                        f"{', '.join(names)}")
    settings = run_settings(job)
    history: list[dict[str, Any]] = []
    if progress:
        changed = [k for k, v in settings["options"].items() if progress["settings"]["options"].get(k) != v]
        if changed:
            raise UserError(f"--resume with other options than the unfinished run in {staging} (--"
                            f"{changed[0].replace('_', '-')}); resume with the same options or remove {staging}")
        history = progress["history"]
        load_state(job, staging / STATE, history)
    if main:
        print(f"distilling {job.model_dir} with {config.recipe} from {config.teacher}: {job.task.describe()}; "
              f"stages {' -> '.join(names)}" + (f" (resuming after {history[-1]['stage']})" if history else ""))
        for note in job.notes:
            print(f"  {note}")
    if any(stage.teacher == "team" for stage in job.stages) and job.team_probabilities is None:
        job.team_probabilities, job.team_basis = team_probabilities(job)
        if main:
            shown = ", ".join(f"{name} {p:.3f}" for name, p in zip(job.teacher_names["team"], job.team_probabilities))
            print(f"  teacher team, {config.skd_sampling}: {shown}")
    settings = run_settings(job)  # with the team's probabilities

    try:
        for index, stage in enumerate(job.stages):
            if index < len(history):
                continue
            entry = run_stage(job, stage, index, work=staging, main=main)
            history.append(entry)
            if main:
                save_progress(job, staging, history, settings)
                print(f"  stage {stage.name}: {entry['steps']} steps, probe loss {entry['probe_before']['total']:.4f}"
                      f" -> {entry['probe_after']['total']:.4f}" + (f", {format_metrics(entry['eval'], job.metric)}"
                                                                      if entry.get("eval") else ""))
            if stage.name == config.until_stage and index < len(job.stages) - 1:
                if main:
                    print(f"stopped after stage {stage.name} as asked; continue with the same command and --resume")
                return {}
        eval_metrics = history[-1]["eval"]
        if main and config.onnx:  # the graphs, scored on the rows the last stage evaluated (finetune --onnx's)
            from nasbert.finetune.onnx_eval import evaluate_onnx

            eval_metrics = {**eval_metrics, **evaluate_onnx(job.student, staging, job.dev["task"], job.tokenizer,
                                                            job.tasks["task"], job.metric, config.int8,
                                                            config.batch_size, job.max_seq_len)}
        if main:
            write_output(job, staging, output, history, settings, eval_metrics)
            print(format_metrics(eval_metrics, job.metric))
            warn_if_stalled(eval_metrics)
            print(f"wrote {output}")
        return eval_metrics
    except UserError:
        if main and not history:
            shutil.rmtree(staging, ignore_errors=True)
        raise


def config_recipe(config: DistillConfig):
    from nasbert.finetune.distill.registry import RECIPES

    return RECIPES[config.recipe]


def run_settings(job: Job) -> dict[str, Any]:
    options = {k: v for k, v in dataclasses.asdict(job.config).items() if k not in NOT_SETTINGS}
    return {"options": options, "recipe": job.recipe.name, "layer_map": format_layer_map(job.pairs) or None,
            "stages": [stage.to_json() for stage in job.stages], "text_columns": job.task.text_columns,
            "labels": job.task.labels, "metric": job.metric, "max_seq_len": job.max_seq_len, "notes": job.notes,
            "team": job.teacher_names.get("team"), "team_probabilities": job.team_probabilities,
            "team_basis": job.team_basis or None}


# ---- one stage ---------------------------------------------------------------------------------------------------


def run_stage(job: Job, stage: Stage, index: int, *, work: Path, main: bool = True, max_steps: int | None = None,
              teachers: list | None = None, report: bool = True) -> dict[str, Any]:
    """Train job.student through `stage` (Trainer files under `work`); return its history entry."""
    from transformers import DataCollatorWithPadding, set_seed

    config = job.config
    set_seed(config.seed + index)
    if stage.head != job.head:
        _fresh_head(job, stage.head, work)
    student, view = job.student, job.student_view
    teachers = teachers or job.teachers.get(stage.teacher, job.teachers["task"])
    pick = None
    if stage.teacher == "team" and len(teachers) > 1:
        from functools import partial

        from nasbert.finetune.distill.skd import sampled_teacher

        pick = partial(sampled_teacher, job.team_probabilities, config.seed)
    plan = StagePlan(stage, view, teachers, job.pairs, config.kd_temperature, job.tasks[stage.head].regression, pick)

    stage_config = dataclasses.replace(config, epochs=stage.epochs or config.epochs, seed=config.seed + index,
                                       max_steps=max_steps or config.max_steps,
                                       report_to=config.report_to if report else "none")
    stage_dir = work / f"stage-{index:02d}-{stage.name}"
    args = training_arguments(stage_config, stage_dir, job.metric)
    if not stage.evaluate:
        args = dataclasses.replace(args, eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    data = job.train[stage.data]
    collator = DataCollatorWithPadding(job.tokenizer)
    probe = {k: v.to(args.device) for k, v in collator([data[i] for i in range(min(PROBE_ROWS, len(data)))]).items()}
    student.to(args.device)
    for teacher, _ in teachers:
        teacher.to(args.device)

    units = view.units(student)
    for unit in units[stage.trainable or len(units):]:  # gradual unfreezing: the top `trainable` units train
        for parameter in unit:
            parameter.requires_grad_(False)
    _attach_projections(job, plan, probe)
    world = max(1, args.world_size)
    total_steps = stage_config.max_steps or math.ceil(stage_config.epochs * math.ceil(len(data) / (
        config.batch_size * world)))
    args.logging_steps = max(1, min(50, total_steps // 20))
    evaluation = job.dev[stage.head]
    with environment_set(TENSORBOARD_LOGGING_DIR=str(work / "tensorboard" / stage_dir.name)):
        trainer = distill_trainer_class()(
            model=student, args=args, train_dataset=data, eval_dataset=evaluation if stage.evaluate else None,
            processing_class=job.tokenizer, data_collator=collator, plan=plan,
            compute_metrics=metrics_function(job.tasks[stage.head], job.metric, _train_labels(job, stage.head))
            if stage.evaluate else None)
    try:
        before = _probe(plan, student, probe)
        start = time.perf_counter()
        train_metrics = trainer.train().metrics
        wall_s = time.perf_counter() - start
        entry: dict[str, Any] = {
            "stage": stage.name, "index": index, **stage.to_json(), "steps": trainer.state.global_step,
            "train_loss": train_metrics.get("train_loss"), "wall_s": round(wall_s, 3),
            "terms": {k: v / max(1, trainer.term_steps) for k, v in trainer.term_sums.items()},
            "probe_before": before}
        if stage.evaluate:
            entry["eval"] = {**trainer.evaluate(), "eval_samples": len(evaluation)}
        if stage.keep_best:
            entry.update(_keep_best(job, trainer, evaluation, work, main))
        entry["probe_after"] = _probe(plan, student, probe)  # the weights the stage hands on
        if plan.drawn:
            entry["drawn"] = [plan.drawn[step] for step in sorted(plan.drawn)]
            entry["drawn_counts"] = [entry["drawn"].count(k) for k in range(len(teachers))]
    finally:
        _detach_projections(student)
        for parameter in student.parameters():
            parameter.requires_grad_(True)
        shutil.rmtree(stage_dir, ignore_errors=True)
    return entry


def _probe(plan: StagePlan, student: nn.Module, batch: dict) -> dict[str, float]:
    """The stage's loss and its terms on a fixed batch, dropout off (a deterministic before/after measure)."""
    was_training = student.training
    student.eval()
    try:
        with torch.no_grad():
            total, terms, _ = plan.loss(student, batch, step=0, training=False)
    finally:
        student.train(was_training)
    return {"total": float(total), **terms}


def _attach_projections(job: Job, plan: StagePlan, batch: dict) -> None:
    """Make the learned maps this stage reads (kept for later stages) and hang them under the student."""
    shapes = plan.projection_shapes(job.student, batch)
    if not shapes:
        return
    for name, (width_in, width_out) in shapes.items():
        if _key(name) not in job.projections:
            job.projections[_key(name)] = nn.Linear(width_in, width_out)
    maps = _NamedMaps(nn.ModuleDict({_key(name): job.projections[_key(name)] for name in shapes}))
    setattr(job.student, PROJECTIONS, maps.to(next(job.student.parameters()).device))


def _key(name: str) -> str:
    return name.replace(".", "_")  # ModuleDict keys cannot hold dots: "hidden.s0" -> "hidden_s0"


class _NamedMaps(nn.Module):
    """The stage's projections, looked up by their loss names ("hidden.s0")."""

    def __init__(self, maps: nn.ModuleDict):
        super().__init__()
        self.maps = maps

    def __contains__(self, name: str) -> bool:
        return _key(name) in self.maps

    def __getitem__(self, name: str) -> nn.Module:
        return self.maps[_key(name)]


def _detach_projections(student: nn.Module) -> None:
    if hasattr(student, PROJECTIONS):
        delattr(student, PROJECTIONS)


def _fresh_head(job: Job, head: str, work: Path) -> None:
    """Keep the encoder, drop the head: a new one of the `head` label set (xtremedistil's target fine-tuning)."""
    encoder_dir = work / "encoder"
    shutil.rmtree(encoder_dir, ignore_errors=True)
    encoder = job.student.base_model
    encoder.config.update({k: v for k, v in label_maps(job.tasks[head]).items()})
    encoder.save_pretrained(encoder_dir)
    job.set_student(load_student(encoder_dir, job.tasks[head], job.config.trust_remote_code))
    job.head = head
    shutil.rmtree(encoder_dir, ignore_errors=True)


def _keep_best(job: Job, trainer, evaluation, work: Path, main: bool) -> dict[str, Any]:
    """XtremeDistil's reset: back to the best weights so far when the dev loss rose (kept in memory, and in
    work/BEST for a resumed run)."""
    from safetensors.torch import load_file, save_file

    loss = trainer.evaluate(eval_dataset=evaluation)["eval_loss"]
    if job.best_loss is None or loss <= job.best_loss:
        job.best_loss = loss
        job.best_state = {k: v.detach().cpu().clone() for k, v in job.student.state_dict().items()}
        if main:
            save_file({k: v.contiguous() for k, v in job.best_state.items()}, work / BEST)
        return {"dev_loss": loss, "reset_to_best": False}
    if job.best_state is None:  # resumed: the best weights are on disk
        job.best_state = load_file(work / BEST)
    job.student.load_state_dict(job.best_state)
    return {"dev_loss": loss, "reset_to_best": True, "best_dev_loss": job.best_loss}


# ---- the team's probabilities (skd) ----------------------------------------------------------------------------


def team_probabilities(job: Job) -> tuple[list[float], dict]:
    """p(k) for the job's team by --skd-sampling, and what it was computed from (for distill_args.json)."""
    from nasbert.finetune.distill.skd import explicit_probabilities, rank_probabilities

    config, members = job.config, len(job.teachers["team"])
    if config.skd_sampling == "uniform":
        return [1 / members] * members, {}
    if config.skd_sampling == "explicit":
        return explicit_probabilities(config.skd_probs, members), {}
    scores = teacher_scores(job) if config.skd_sampling == "teacher-rank" else probe_student_scores(job)
    return rank_probabilities(scores), {"scores": scores, "metric": job.metric}


def evaluate_model(job: Job, model: nn.Module, head: str = "task") -> float:
    """The task metric of `model` on the dev rows (batched, no grad)."""
    from transformers import DataCollatorWithPadding, EvalPrediction

    collator, data = DataCollatorWithPadding(job.tokenizer), job.dev[head]
    device = next(model.parameters()).device
    logits, labels = [], []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(data), job.config.batch_size):
            batch = collator([data[i] for i in range(start, min(len(data), start + job.config.batch_size))])
            labels.append(batch.pop("labels"))
            logits.append(model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu())
    model.train(was_training)
    compute = metrics_function(job.tasks[head], job.metric)
    return compute(EvalPrediction(predictions=torch.cat(logits).numpy(), label_ids=torch.cat(labels).numpy()))[
        job.metric]


def _train_labels(job: Job, head: str) -> list | None:
    """The labelled training rows' labels of the head ("task"); transfer rows carry the teacher's labels: none."""
    return job.train["task"]["labels"] if head == "task" else None


def teacher_scores(job: Job) -> list[float]:
    """Each team member's own dev score."""
    return [evaluate_model(job, model) for model, _ in job.teachers["team"]]


def probe_student_scores(job: Job) -> list[float]:
    """The dev score of the student after --skd-probe-steps of KD from each member alone (from the same start)."""
    import copy

    start, scores = job.student, []
    alpha = job.config.kd_alpha
    stage = Stage("skd-probe", {"hard": 1 - alpha, "soft": alpha})
    work = job.work / "skd-probe"
    try:
        for member in job.teachers["team"]:
            job.set_student(copy.deepcopy(start))
            run_stage(job, stage, 0, work=work, max_steps=job.config.skd_probe_steps, teachers=[member], report=False)
            scores.append(evaluate_model(job, job.student))
    finally:
        job.set_student(start)
        shutil.rmtree(work, ignore_errors=True)
    return scores
