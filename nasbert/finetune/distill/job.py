"""Everything a distillation run loads once: the task, the data of each kind, the student, the teachers, the map.

Bad input ends here, before anything is written, with one sentence: a teacher with another vocabulary, a team
member with another label set, a teacher that is not fine-tuned on the task (no head, or one of another size),
a transfer file without its label column, a layer map that does not fit the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from nasbert.common.remote_code import trust_remote_code
from nasbert.errors import UserError
from nasbert.finetune.config import Task
from nasbert.finetune.distill.config import DistillConfig
from nasbert.finetune.distill.layer_map import format_layer_map, resolve_layer_map
from nasbert.finetune.distill.registry import Recipe, Stage, StudentShape
from nasbert.finetune.distill.views import ModelView
from nasbert.finetune.metrics import resolve_metric
from nasbert.finetune.models import check_model_folder, load_student, load_task_teacher, load_tokenizer
from nasbert.finetune.task import encode, read_table, resolve_task, subsample


@dataclass
class Job:
    """A loaded run: the student is trained in place, stage after stage."""

    config: DistillConfig
    recipe: Recipe
    model_dir: Path
    tokenizer: Any
    tasks: dict[str, Task]  # "task" (--train-file) and, for xtremedistil, "transfer"
    metric: str
    max_seq_len: int
    train: dict[str, Any]  # data kind -> tokenized training rows
    dev: dict[str, Any]  # head kind -> tokenized validation rows
    student: nn.Module
    teachers: dict[str, list[tuple[nn.Module, ModelView]]] = field(default_factory=dict)
    teacher_names: dict[str, list[str]] = field(default_factory=dict)
    pairs: list[tuple[int, int]] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    projections: nn.ModuleDict = field(default_factory=nn.ModuleDict)
    notes: list[str] = field(default_factory=list)
    team_probabilities: list[float] | None = None
    team_basis: dict = field(default_factory=dict)
    head: str = "task"  # the label set of the student's head now
    work: Path = Path(".")  # where stages keep their Trainer files (OUTPUT.partial)
    best_loss: float | None = None  # xtremedistil's best dev loss so far, and its weights
    best_state: dict | None = None

    student_view: ModelView | None = None

    @property
    def task(self) -> Task:
        return self.tasks["task"]

    def set_student(self, model: nn.Module) -> None:
        """Train `model` from now on (a new head, a resumed state); the old view's hooks go."""
        if self.student_view is not None:
            self.student_view.release()
        self.student, self.student_view = model, ModelView(model, "student", str(self.model_dir))


def load_job(config: DistillConfig, recipe: Recipe) -> Job:
    """Read and check every input of `config`; the student gets a head for the first stage's label set."""
    from transformers import set_seed

    kinds = recipe.stages(config, StudentShape(1))  # which data, teachers and heads; not yet the unit count
    model_dir = check_model_folder(config.model, "model")
    files = {"training": config.train_file, "validation": config.validation_file}
    train_rows, validation_rows = read_table(config.train_file, "training"), read_table(config.validation_file,
                                                                                         "validation")
    tasks = {"task": resolve_task(train_rows, validation_rows, config, files)}
    metric = resolve_metric(tasks["task"], config.metric)
    trusted = config.trust_remote_code  # a folder's own code runs only when asked
    tokenizer = load_tokenizer(model_dir, "model", trusted)
    rows = {"task": (train_rows, validation_rows)}
    if any(stage.data == "transfer" for stage in kinds):
        rows["transfer"], tasks["transfer"] = _transfer_rows(config)

    teacher_task = tasks["transfer"] if any(stage.head == "transfer" for stage in kinds) else tasks["task"]
    teachers, names = {}, {}
    teacher_dir = check_model_folder(config.teacher, "teacher")
    teachers["task"] = [load_task_teacher(teacher_dir, teacher_task, tokenizer, trusted)]
    names["task"] = [config.teacher]
    if any(stage.teacher == "team" for stage in kinds):
        members = [load_task_teacher(check_model_folder(m, "team member"), teacher_task, tokenizer, trusted)
                   for m in config.team or []]
        teachers["team"], names["team"] = teachers["task"] + members, [config.teacher, *(config.team or [])]
    if any(stage.teacher == "pretrained" for stage in kinds):
        teachers["pretrained"] = [load_pretrained_teacher(config.pretrained_teacher, tokenizer, trusted)]
        names["pretrained"] = [config.pretrained_teacher]

    set_seed(config.seed)  # the new head's initial weights, as in finetune
    student = load_student(model_dir, tasks[kinds[0].head], trusted)
    max_positions = min([getattr(m.config, "max_position_embeddings", None) or 10**9
                         for m in [student, *(t for group in teachers.values() for t in group)]])
    max_seq_len = config.max_seq_len or min(128, max_positions)
    if max_seq_len > max_positions:
        raise UserError(f"--max-seq-len {max_seq_len} is longer than the {max_positions} positions of the student "
                        "or a teacher")

    train, dev = {}, {}
    for kind, (train_part, dev_part) in rows.items():
        limit = config.max_train_samples if kind == "task" else config.max_transfer_samples
        train[kind] = encode(subsample(train_part, limit, config.seed), tokenizer, tasks[kind], max_seq_len)
        dev[kind] = encode(subsample(dev_part, config.max_eval_samples, config.seed), tokenizer, tasks[kind],
                           max_seq_len)
    if any(stage.data == "general" for stage in kinds):
        train["general"] = _general_rows(config, tokenizer, max_seq_len)

    job = Job(config=config, recipe=recipe, model_dir=model_dir, tokenizer=tokenizer, tasks=tasks, metric=metric,
              max_seq_len=max_seq_len, train=train, dev=dev, student=student, head=kinds[0].head,
              teacher_names=names)
    job.set_student(student)
    job.teachers = {kind: [(model, ModelView(model, "teacher", name)) for model, name in zip(group, names[kind])]
                    for kind, group in teachers.items()}
    job.stages = recipe.stages(config, StudentShape(job.student_view.num_layers))
    _resolve_map(job)
    return job


def load_pretrained_teacher(folder: str, tokenizer, trusted: bool = False) -> nn.Module:
    """A frozen encoder (no head needed) with the student's vocabulary: ernie-tiny's general-stage teacher."""
    from transformers import AutoModel

    path = check_model_folder(folder, "pretrained teacher")
    if load_tokenizer(path, "pretrained teacher", trusted).get_vocab() != tokenizer.get_vocab():
        raise UserError(f"pretrained teacher {folder} has a different tokenizer vocabulary from the model's; "
                        "distillation compares states on the same tokens")
    trust = trust_remote_code(path, trusted, "pretrained teacher folder")
    return AutoModel.from_pretrained(path, trust_remote_code=trust).eval().requires_grad_(False)


def _transfer_rows(config: DistillConfig):
    """(train, dev) rows of the transfer file (a seeded 90/10 split, as XtremeDistil) and its task."""
    rows = read_table(config.transfer_train_file, "transfer")
    if config.transfer_label_column not in rows.column_names:
        raise UserError(f"transfer file {config.transfer_train_file} has no label column "
                        f"{config.transfer_label_column!r} (columns: {', '.join(rows.column_names)}); xtremedistil "
                        "trains on the source task's labels: name it with --transfer-label-column")
    if len(rows) < 10:
        raise UserError(f"transfer file {config.transfer_train_file} has {len(rows)} rows; xtremedistil holds 10 % "
                        "out as its dev split, so give at least 10")
    split = rows.train_test_split(test_size=0.1, seed=config.seed)
    transfer_config = replace(config, text_columns=config.transfer_text_columns,
                              label_column=config.transfer_label_column, task="auto", metric=None)
    task = resolve_task(split["train"], split["test"], transfer_config,
                        {"training": config.transfer_train_file, "validation": config.transfer_train_file})
    return (split["train"], split["test"]), task


def _general_rows(config: DistillConfig, tokenizer, max_seq_len: int):
    """The general corpus, one passage a row, tokenized and truncated (ernie-tiny's stages 1 and 2)."""
    from nasbert.common.data import load_text

    text = subsample(load_text([config.general_train_file]), config.max_general_samples, config.seed)
    return text.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_seq_len), batched=True,
                    remove_columns=["text"], desc="tokenize")


def _resolve_map(job: Job) -> None:
    """The layer map against the student's layers and the teachers' (all layer-matching teachers alike)."""
    config = job.config
    if config.layer_map is None:
        return
    teacher_layers = job.teachers["task"][0][1].num_layers
    for kind in ("pretrained",):
        for _, view in job.teachers.get(kind, []):
            if view.num_layers != teacher_layers:
                raise UserError(f"the pretrained teacher has {view.num_layers} layers and the fine-tuned teacher "
                                f"{teacher_layers}; ernie-tiny maps both with one --layer-map, so use the same model")
    student_view = job.student_view
    job.pairs = resolve_layer_map(config.layer_map, student_view.num_layers, teacher_layers)
    uses_attention = any("attention_mse" in stage.losses for stage in job.stages)
    missing = [s for s, _ in job.pairs if s not in student_view.attention]
    if uses_attention and missing:
        job.notes.append(f"student block(s) {', '.join(f's{s}' for s in missing)} hold no attention layer: their "
                         "attention-score loss is left out (hidden-state losses still apply)")
    job.notes.insert(0, f"layer map {config.layer_map}: {format_layer_map(job.pairs)} (student layer : teacher "
                        f"layer, 0-based; the student has {student_view.num_layers}, the teacher {teacher_layers})")
