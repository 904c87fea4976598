"""Fine-tune a student folder (or any Hugging Face encoder folder) on a sentence or sentence-pair task.

    nasbert finetune students/s8 --train-file sst2/train.tsv --validation-file sst2/dev.tsv --output ft/s8
    nasbert finetune teacher --train-file ... --validation-file ... --output ft/teacher   # a teacher for KD
    nasbert finetune students/s8 ... --teacher ft/teacher --kd-alpha 0.5                 # + logit distillation
    torchrun --nproc-per-node=2 -m nasbert finetune ...                                   # DDP, as the Trainer does it

The model is loaded the way any user would, `AutoModelForSequenceClassification.from_pretrained(dir,
num_labels=k)` (a student through nasbert's registered classes; another folder's own code only with
--trust-remote-code), and trained with the plain Hugging Face Trainer: evaluation and a
checkpoint each epoch, the best one kept. Data is a GLUE-style TSV (header row), a CSV or JSON lines;
labels are class names / ids (classification) or floats (regression, e.g. STS-B). The output folder holds
the fine-tuned model, its tokenizer, its code files (so it loads where nasbert is not installed),
eval_results.json, train_results.json, finetune_args.json and tensorboard/.

The output folder is held for the whole job (a second run on it is refused, naming the holder). Ctrl-C or
SIGTERM makes the Trainer save a checkpoint after the current step (in OUTPUT.partial/checkpoints/) and exits
130 / 143; there is no --resume here: a new run starts over.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch

from nasbert.common.lock import other_entries
from nasbert.common.losses import logit_kd
from nasbert.common.recipe import hold_folder
from nasbert.common.signals import Interrupted, StopSignals
from nasbert.errors import UserError
from nasbert.finetune.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, FinetuneConfig
from nasbert.finetune.metrics import metrics_function, resolve_metric, stall_note
from nasbert.finetune.models import check_model_folder, copy_code_files, load_student, load_task_teacher, load_tokenizer
from nasbert.finetune.task import encode, read_table, resolve_task, subsample


def _trainer_class():
    from transformers import Trainer

    class FinetuneTrainer(Trainer):
        """The Trainer with loss = model's task loss, or (1-a) task loss + a KD loss from a frozen teacher.

        The loss is a per-batch mean and is computed here rather than by the Trainer, because the Trainer takes
        any forward(**kwargs) for one that normalises by num_items_in_batch and would rescale it under DDP.
        """

        loss_is_scaled_for_ga = False

        def __init__(self, *args, teacher=None, kd_alpha: float = 0.0, kd_temperature: float = 1.0,
                     regression: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            self.teacher = teacher
            self.kd_alpha, self.kd_temperature, self.regression = kd_alpha, kd_temperature, regression
            self._kd_losses: list[float] = []  # since the last log
            self.kd_loss_sum, self.kd_loss_steps = 0.0, 0  # over the whole run
            if teacher is not None:
                self.teacher.to(self.args.device)
                self._teacher_inputs = set(inspect.signature(teacher.forward).parameters) - {"labels"}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            loss = outputs.loss
            if self.teacher is not None and model.training:  # evaluation reports the task loss alone
                with torch.no_grad():
                    teacher_inputs = {k: v for k, v in inputs.items() if k in self._teacher_inputs}
                    teacher_logits = self.teacher(**teacher_inputs).logits
                kd_loss = logit_kd(outputs.logits, teacher_logits, self.kd_temperature, self.regression)
                self._kd_losses.append(kd_loss.item())
                self.kd_loss_sum, self.kd_loss_steps = self.kd_loss_sum + self._kd_losses[-1], self.kd_loss_steps + 1
                loss = (1 - self.kd_alpha) * loss + self.kd_alpha * kd_loss
            return (loss, outputs) if return_outputs else loss

        def log(self, logs: dict[str, float], *args, **kwargs) -> None:
            if self._kd_losses and "loss" in logs:
                logs["kd_loss"] = round(sum(self._kd_losses) / len(self._kd_losses), 4)
                self._kd_losses.clear()
            super().log(logs, *args, **kwargs)

    return FinetuneTrainer


@contextlib.contextmanager
def environment_set(**values: str) -> Iterator[None]:
    """Set environment variables for a while (transformers 5 takes the tensorboard folder from the environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_config(config: FinetuneConfig) -> None:
    """Refuse impossible options with one sentence (a UserError) before anything is loaded."""
    checks = [(0 < config.epochs < math.inf, "--epochs must be positive"),
              (0 < config.lr < math.inf, "--lr must be a finite number, positive"),
              (0 <= config.weight_decay < math.inf, "--weight-decay must be a finite number, 0 or more"),
              (config.batch_size > 0, "--batch-size must be positive"),
              (config.max_seq_len is None or config.max_seq_len > 1, "--max-seq-len must be at least 2"),
              (config.max_steps is None or config.max_steps > 0, "--max-steps must be positive"),
              (config.max_train_samples is None or config.max_train_samples > 0,
               "--max-train-samples must be positive"),
              (config.max_eval_samples is None or config.max_eval_samples > 0, "--max-eval-samples must be positive"),
              (0 <= config.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)"),
              (0 <= config.kd_alpha <= 1, "--kd-alpha must be in [0, 1]"),
              (0 < config.kd_temperature < math.inf, "--kd-temperature must be positive"),
              (config.task in ("auto", "classification", "regression"), "--task is auto, classification or regression"),
              (config.device in ("auto", "cpu", "cuda"), "--device is auto, cpu or cuda"),
              (config.device != "cuda" or torch.cuda.is_available(), "--device cuda was asked but no GPU is visible"),
              (config.onnx or not config.int8, "--int8 quantizes the ONNX graph; add --onnx")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    if config.onnx:
        from nasbert.export.onnx import require_onnx

        require_onnx(config.int8)  # before any training: one sentence naming the extra to install


def output_folder(config: FinetuneConfig, suffix: str = "-finetuned", doing: str = "fine-tuning") -> Path:
    """--output (default: MODEL + suffix), refused if it is the model folder or a non-empty folder."""
    model = Path(config.model)
    output = Path(config.output) if config.output else model.with_name(model.name + suffix)
    if output.resolve() == model.resolve():
        raise UserError(f"--output must differ from the model folder ({doing} never overwrites its input)")
    if output.exists() and (not output.is_dir() or other_entries(output)):
        raise UserError(f"output folder {output} already exists and is not empty; remove it or pick another --output")
    return output


def training_arguments(config: FinetuneConfig, staging: Path, metric: str):
    """Evaluate and checkpoint each epoch (model only, the best kept), load the best at the end; bf16 on CUDA."""
    from transformers import TrainingArguments

    on_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    return TrainingArguments(
        output_dir=str(staging / "checkpoints"), num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        learning_rate=config.lr, warmup_steps=config.warmup_ratio, weight_decay=config.weight_decay,
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=config.batch_size,
        eval_strategy="epoch", save_strategy="epoch", save_total_limit=1, save_only_model=True,
        load_best_model_at_end=True, metric_for_best_model=metric, greater_is_better=True,
        report_to=[] if config.report_to == "none" else [config.report_to], seed=config.seed,
        use_cpu=not on_cuda, bf16=on_cuda and torch.cuda.is_bf16_supported())


def finetune(config: FinetuneConfig) -> dict[str, float]:
    """Fine-tune `config.model` on the task, write the output folder; return the final validation metrics."""
    check_config(config)
    output = output_folder(config)
    with hold_folder(output, "finetune", enabled=int(os.environ.get("RANK", "0")) == 0):  # rank 0 holds it
        output_folder(config)  # still empty, now that no other run can write it
        return _finetune(config, output)


def _stop_callback(stop: StopSignals):
    """A TrainerCallback: once `stop` has a signal (on any rank), save a checkpoint after this step and stop."""
    from types import SimpleNamespace

    import torch.distributed as dist
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ranks = SimpleNamespace(enabled=dist.is_available() and dist.is_initialized(), device=args.device)
            if stop.requested(ranks):
                control.should_save = control.should_training_stop = True

        def on_epoch_end(self, args, state, control, **kwargs):
            if stop.signum:  # saved at the step already; no evaluation on the way out
                control.should_save = control.should_evaluate = False

    return StopOnSignal()


def _finetune(config: FinetuneConfig, output: Path) -> dict[str, float]:
    from transformers import DataCollatorWithPadding, set_seed

    # Check everything a user can get wrong before anything is written.
    model_dir = check_model_folder(config.model, "model")
    files = {"training": config.train_file, "validation": config.validation_file}
    train_rows = read_table(config.train_file, "training")
    validation_rows = read_table(config.validation_file, "validation")
    task = resolve_task(train_rows, validation_rows, config, files)
    metric = resolve_metric(task, config.metric)
    tokenizer = load_tokenizer(model_dir, "model", config.trust_remote_code)
    teacher = None
    if config.teacher is not None:
        teacher = load_task_teacher(check_model_folder(config.teacher, "teacher"), task, tokenizer,
                                    config.trust_remote_code)
    set_seed(config.seed)  # the new head's initial weights
    model = load_student(model_dir, task, config.trust_remote_code)
    max_positions = getattr(model.config, "max_position_embeddings", None) or 10**9
    max_seq_len = config.max_seq_len or min(128, max_positions)
    if max_seq_len > max_positions:
        raise UserError(f"--max-seq-len {max_seq_len} is longer than the model's {max_positions} positions")

    # Data and Trainer. Everything goes to a staging folder, renamed to `output` once complete.
    staging = output.with_name(output.name + ".partial")
    if int(os.environ.get("RANK", "0")) == 0:
        shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    args = training_arguments(config, staging, metric)
    with args.main_process_first(desc="tokenize"):
        train_data = encode(subsample(train_rows, config.max_train_samples, config.seed), tokenizer, task,
                            max_seq_len)
        validation_data = encode(subsample(validation_rows, config.max_eval_samples, config.seed), tokenizer, task,
                                 max_seq_len)
    steps_per_epoch = math.ceil(len(train_data) / (config.batch_size * args.world_size))
    args.logging_steps = max(1, min(50, (config.max_steps or math.ceil(config.epochs * steps_per_epoch)) // 20))
    with environment_set(TENSORBOARD_LOGGING_DIR=str(staging / "tensorboard")):  # read by the Trainer's callback
        trainer = _trainer_class()(
            model=model, args=args, train_dataset=train_data, eval_dataset=validation_data,
            processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=metrics_function(task, metric, train_data["labels"]),
            teacher=teacher,
            kd_alpha=config.kd_alpha if teacher is not None else 0.0, kd_temperature=config.kd_temperature,
            regression=task.regression)
    stop = StopSignals()
    trainer.add_callback(_stop_callback(stop))
    main = trainer.is_world_process_zero()
    if main:
        kd = f", KD from {config.teacher} (alpha {config.kd_alpha}, T {config.kd_temperature})" if teacher else ""
        print(f"fine-tuning {model_dir} ({type(model).__name__}) on {len(train_data):,} training and "
              f"{len(validation_data):,} validation examples: {task.describe()}{kd}")

    try:
        with stop:  # Ctrl-C / SIGTERM: the Trainer saves after the current step and stops
            train_metrics = {**trainer.train().metrics, "train_samples": len(train_data)}
        if stop.signum:
            checkpoint = staging / "checkpoints" / f"checkpoint-{trainer.state.global_step}"
            raise stop.interrupted(f"the model after step {trainer.state.global_step} is in {checkpoint}; "
                                   f"finetune has no --resume (a new run starts over and clears {staging})")
        if teacher is not None:
            train_metrics["train_kd_loss"] = trainer.kd_loss_sum / max(1, trainer.kd_loss_steps)
        eval_metrics = {**trainer.evaluate(), "eval_samples": len(validation_data)}  # the best epoch's model
        if main:
            trainer.save_model(str(staging))  # model, config, tokenizer
            copy_code_files(model_dir, staging)
            if config.onnx:  # the graphs, scored on the same rows (model.onnx, model.int8.onnx, onnx_eval.json)
                from nasbert.finetune.onnx_eval import evaluate_onnx

                eval_metrics.update(evaluate_onnx(trainer.model, staging, validation_data, tokenizer, task, metric,
                                                  config.int8, config.batch_size, max_seq_len))
            settings = {**asdict(config), "output": str(output), "text_columns": task.text_columns,
                        "labels": task.labels, "metric": metric, "max_seq_len": max_seq_len}
            for name, values in (("eval_results", eval_metrics), ("train_results", train_metrics),
                                 ("finetune_args", settings)):
                (staging / f"{name}.json").write_text(json.dumps(values, indent=2) + "\n")
            shutil.rmtree(staging / "checkpoints", ignore_errors=True)
            output.mkdir(exist_ok=True)  # held (and made) by this process, empty but for the lock
            for entry in sorted(staging.iterdir(), key=lambda p: p.name == "config.json"):  # config.json last
                entry.rename(output / entry.name)
            staging.rmdir()
    except BaseException as error:
        if main and not isinstance(error, Interrupted):  # an interrupted run keeps its checkpoint
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if main:
        print(format_metrics(eval_metrics, metric))
        print(f"wrote {output}")
        warn_if_stalled(eval_metrics)
    return eval_metrics


def warn_if_stalled(metrics: dict[str, float]) -> None:
    """Say so where the model scores no better on the validation rows than a constant prediction would."""
    note = stall_note(metrics)
    if note:
        print(f"warning: this run did no better on the validation set than a constant prediction: {note} (try "
              "another --lr, more epochs or more data)")


def format_metrics(metrics: dict[str, float], metric: str) -> str:
    names = [metric] + [m for m in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS) if m != metric]
    shown = [f"{name} {metrics['eval_' + name]:.4f}" for name in names if f"eval_{name}" in metrics]
    onnx = [f"onnx {p} {metric} {metrics[f'onnx_{p}_{metric}']:.4f}" for p in ("fp32", "int8")
            if f"onnx_{p}_{metric}" in metrics]  # --onnx: the graphs' scores on the same rows
    return "validation: " + "  ".join(shown + [f"loss {metrics['eval_loss']:.4f}"] + onnx)

