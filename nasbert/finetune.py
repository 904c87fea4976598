"""Fine-tune a student folder (or any Hugging Face encoder folder) on a sentence or sentence-pair task.

    nasbert finetune students/s8 --train-file sst2/train.tsv --validation-file sst2/dev.tsv --output ft/s8
    nasbert finetune teacher --train-file ... --validation-file ... --output ft/teacher   # a teacher for KD
    nasbert finetune students/s8 ... --teacher ft/teacher --kd-alpha 0.5                 # + logit distillation
    torchrun --nproc-per-node=2 -m nasbert finetune ...                                   # DDP, as the Trainer does it

The model is loaded the way any user would, `AutoModelForSequenceClassification.from_pretrained(dir,
trust_remote_code=True, num_labels=k)`, and trained with the plain Hugging Face Trainer: evaluation and a
checkpoint each epoch, the best one kept. Data is a GLUE-style TSV (header row), a CSV or JSON lines;
labels are class names / ids (classification) or floats (regression, e.g. STS-B). The output folder holds
the fine-tuned model, its tokenizer, its code files (so it loads where nasbert is not installed),
eval_results.json, train_results.json, finetune_args.json and tensorboard/.
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nasbert.errors import UserError

# Column names of GLUE-style tasks, tried in order when --text-columns is not given.
TEXT_COLUMN_CANDIDATES = (
    ("sentence1", "sentence2"), ("question1", "question2"), ("question", "sentence"), ("premise", "hypothesis"),
    ("question", "passage"), ("sentence",), ("text",), ("review",),
)
CLASSIFICATION_METRICS = ("accuracy", "f1", "matthews")
REGRESSION_METRICS = ("pearson", "spearman")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


@dataclass
class FinetuneConfig:
    model: str
    train_file: str
    validation_file: str
    output: str | None = None  # default: <model>-finetuned
    text_columns: list[str] | None = None  # default: detected from the column names
    label_column: str = "label"
    task: str = "auto"  # auto (float labels = regression), classification or regression
    metric: str | None = None  # picks the best epoch; default accuracy (classification) or pearson (regression)
    epochs: float = 3.0
    lr: float = 5e-5
    batch_size: int = 32
    max_seq_len: int | None = None  # default 128, or the model's positions if fewer
    max_steps: int | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 0
    teacher: str | None = None
    kd_alpha: float = 0.5
    kd_temperature: float = 1.0
    device: str = "auto"  # auto, cpu or cuda
    report_to: str = "tensorboard"  # or none


@dataclass
class Task:
    """What is learnt: text column(s) -> label column, class names in id order (None for regression)."""

    text_columns: list[str]
    label_column: str
    labels: list[str] | None

    @property
    def regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    def describe(self) -> str:
        texts = " + ".join(self.text_columns)
        if self.regression:
            return f"regression of {self.label_column!r} from {texts}"
        return f"{self.num_labels}-way classification of {self.label_column!r} ({', '.join(self.labels)}) from {texts}"


# ---------------------------------------------------------------------------------------------------- data


def read_table(path: str, split: str):
    """A GLUE-style TSV (header row, no quoting), CSV or JSON lines file as a datasets.Dataset."""
    from datasets import load_dataset

    file = Path(path)
    if not file.is_file():
        raise UserError(f"{split} file {file} does not exist")
    suffix = file.suffix.lower()
    if suffix in (".tsv", ".csv"):
        # GLUE TSVs hold raw quotes in sentences (quoting off); na_filter off keeps "null" / "NA" texts as text.
        kwargs = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if suffix == ".tsv" else {}
        builder, kwargs = "csv", {**kwargs, "na_filter": False}
    elif suffix in (".json", ".jsonl"):
        builder, kwargs = "json", {}
    else:
        raise UserError(f"{split} file {file} is not .tsv, .csv, .json or .jsonl; convert it to one of those")
    try:
        dataset = load_dataset(builder, data_files=str(file), split="train", **kwargs)
    except Exception as error:  # anything the parser says about the user's file
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"could not read {split} file {file}: {message}") from None
    if len(dataset) == 0:
        raise UserError(f"{split} file {file} has no rows")
    return dataset


def detect_text_columns(columns: list[str], label_column: str, string_columns: list[str]) -> list[str]:
    """GLUE-style names first (sentence1/sentence2, question/sentence, sentence, ...), else the 1-2 text columns."""
    for candidate in TEXT_COLUMN_CANDIDATES:
        if all(c in columns for c in candidate):
            return list(candidate)
    others = [c for c in string_columns if c != label_column]
    if 1 <= len(others) <= 2:
        return others
    raise UserError(f"no text column found among {columns}; name one or two with --text-columns")


def resolve_task(train, validation, config: FinetuneConfig, files: dict[str, str]) -> Task:
    """Check the columns of both splits and decide the text columns, classification or regression, the labels."""
    for split, dataset in (("training", train), ("validation", validation)):
        if config.label_column not in dataset.column_names:
            raise UserError(f"{split} file {files[split]} has no label column {config.label_column!r} "
                            f"(columns: {', '.join(dataset.column_names)}); name it with --label-column")
    if config.text_columns:
        text_columns = list(config.text_columns)
        if not 1 <= len(text_columns) <= 2:
            raise UserError(f"--text-columns takes one or two columns (a sentence or a pair), not {len(text_columns)}")
    else:
        strings = [name for name, feature in train.features.items() if getattr(feature, "dtype", None) == "string"]
        text_columns = detect_text_columns(train.column_names, config.label_column, strings)
    for split, dataset in (("training", train), ("validation", validation)):
        missing = [c for c in text_columns if c not in dataset.column_names]
        if missing:
            raise UserError(f"{split} file {files[split]} has no text column {missing[0]!r} "
                            f"(columns: {', '.join(dataset.column_names)})")
    dtype = getattr(train.features[config.label_column], "dtype", None)
    regression = config.task == "regression" or (config.task == "auto" and dtype in ("float16", "float32", "float64"))
    if regression:
        for split, dataset in (("training", train), ("validation", validation)):
            try:
                [float(v) for v in dataset[config.label_column]]
            except (TypeError, ValueError):
                raise UserError(f"{split} labels in column {config.label_column!r} of {files[split]} are not all "
                                "numbers, so this cannot be a regression task") from None
        return Task(text_columns, config.label_column, None)
    names = sorted({label_name(v) for v in train[config.label_column]}, key=_label_order)
    if len(names) < 2:
        raise UserError(f"training file {files['training']} has a single label value ({names[0]}); "
                        "a classifier needs at least two")
    unknown = sorted({label_name(v) for v in validation[config.label_column]} - set(names), key=_label_order)
    if unknown:
        raise UserError(f"validation label {unknown[0]!r} never occurs in the training file {files['training']}")
    return Task(text_columns, config.label_column, names)


def label_name(value: Any) -> str:
    """The class name of a label value: 1, 1.0 and "1" are the same class."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _label_order(name: str):
    """Numbers in numeric order (so ids 0..k-1 keep their ids), then names in alphabetical order."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def encode(dataset, tokenizer, task: Task, max_seq_len: int):
    """Tokenize (batched) into input_ids / attention_mask (/ token_type_ids) + labels; drop the other columns."""
    label_ids = None if task.regression else {name: i for i, name in enumerate(task.labels)}

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        texts = [["" if t is None else str(t) for t in batch[c]] for c in task.text_columns]
        encoded = tokenizer(*texts, truncation=True, max_length=max_seq_len)
        values = batch[task.label_column]
        encoded["labels"] = ([float(v) for v in values] if label_ids is None
                             else [label_ids[label_name(v)] for v in values])
        return encoded

    return dataset.map(tokenize, batched=True, remove_columns=dataset.column_names, desc="tokenize")


def subsample(dataset, count: int | None, seed: int):
    """A seeded random subset of `count` rows (all rows when count is None or larger)."""
    if count is None or count >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(count))


# ---------------------------------------------------------------------------------------------------- metrics


def matthews_corrcoef(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004); 0 where a marginal is constant."""
    k = int(max(predictions.max(), labels.max())) + 1
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (labels, predictions), 1)
    total, correct = confusion.sum(), np.trace(confusion)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    denominator = np.sqrt((total**2 - predicted_counts @ predicted_counts) * (total**2 - true_counts @ true_counts))
    return float((correct * total - true_counts @ predicted_counts) / denominator) if denominator > 0 else 0.0


def binary_f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 of class id 1 (the positive class of GLUE's binary tasks)."""
    tp = float(np.sum((predictions == 1) & (labels == 1)))
    fp = float(np.sum((predictions == 1) & (labels != 1)))
    fn = float(np.sum((predictions != 1) & (labels == 1)))
    return 2 * tp / (2 * tp + fp + fn) if tp > 0 else 0.0


def metrics_function(task: Task, metric: str) -> Callable[[Any], dict[str, float]]:
    """compute_metrics for the Trainer: accuracy (+F1 if binary, +Matthews if asked), or Pearson and Spearman."""

    def compute(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        labels = np.asarray(eval_prediction.label_ids)
        if task.regression:
            from scipy.stats import pearsonr, spearmanr

            predictions = np.asarray(logits, dtype=np.float64).reshape(-1)
            labels = labels.astype(np.float64).reshape(-1)
            if np.ptp(predictions) == 0 or np.ptp(labels) == 0:  # correlation undefined: say "no correlation"
                return {"pearson": 0.0, "spearman": 0.0}
            return {"pearson": float(pearsonr(predictions, labels)[0]),
                    "spearman": float(spearmanr(predictions, labels)[0])}
        predictions = np.asarray(logits).argmax(axis=-1)
        out = {"accuracy": float(np.mean(predictions == labels))}
        if task.num_labels == 2:
            out["f1"] = binary_f1(predictions, labels)
        if metric == "matthews":
            out["matthews"] = matthews_corrcoef(predictions, labels)
        return out

    return compute


def resolve_metric(task: Task, metric: str | None) -> str:
    if metric is None:
        return "pearson" if task.regression else "accuracy"
    allowed = REGRESSION_METRICS if task.regression else CLASSIFICATION_METRICS
    if not task.regression and task.num_labels > 2 and metric == "f1":
        raise UserError("--metric f1 is the F1 of class 1 of a binary task; this task has "
                        f"{task.num_labels} labels, so use accuracy or matthews")
    if metric not in allowed:
        kind = "a regression" if task.regression else "a classification"
        raise UserError(f"--metric {metric} does not fit {kind} task; use one of {', '.join(allowed)}")
    return metric


# ---------------------------------------------------------------------------------------------------- models


def check_model_folder(folder: str, role: str) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"{role} folder {path} does not exist (give a student folder or a Hugging Face model folder)")
    if not (path / "config.json").is_file():
        raise UserError(f"no model in {role} folder {path}: config.json is missing")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise UserError(f"no model weights in {role} folder {path} (expected model.safetensors)")
    return path


def load_tokenizer(folder: Path, role: str):
    from transformers import AutoTokenizer

    try:  # trust_remote_code: AutoTokenizer reads config.json, whose AutoConfig may be the folder's own code
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    except (OSError, ValueError, TypeError) as error:
        raise UserError(f"no usable tokenizer in {role} folder {folder} ({str(error).splitlines()[0][:200]}); "
                        "save one there with tokenizer.save_pretrained") from None


def label_maps(task: Task) -> dict[str, Any]:
    """from_pretrained / config keyword arguments that make the head fit the task."""
    if task.regression:
        return dict(num_labels=1, problem_type="regression")
    return dict(num_labels=task.num_labels, problem_type="single_label_classification",
                id2label=dict(enumerate(task.labels)), label2id={name: i for i, name in enumerate(task.labels)})


def load_student(folder: Path, task: Task):
    """The model to fine-tune; a head of another size (or none) is replaced by a fresh one of the task's size."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True,
                                                              ignore_mismatched_sizes=True, **label_maps(task))


def load_teacher(folder: Path, task: Task, tokenizer):
    """A frozen fine-tuned teacher for the task: same vocabulary, a trained head of the task's size and labels."""
    from transformers import AutoModelForSequenceClassification

    teacher_tokenizer = load_tokenizer(folder, "teacher")
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise UserError(f"teacher {folder} has a different tokenizer vocabulary from the model's; KD compares "
                        "logits on the same tokens, so use a teacher the student was compressed from")
    try:
        teacher, info = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True,
                                                                           output_loading_info=True)
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


# ---------------------------------------------------------------------------------------------------- training


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                      regression: bool) -> torch.Tensor:
    """KL(teacher || student) on logits softened by T, times T^2 (Hinton et al.); MSE of predictions for regression."""
    if regression:
        return F.mse_loss(student_logits.float(), teacher_logits.float())
    t = temperature
    student_log_probs = F.log_softmax(student_logits.float() / t, dim=-1)  # (B, k)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / t, dim=-1)  # (B, k)
    return F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True) * t * t


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
                kd_loss = distillation_loss(outputs.logits, teacher_logits, self.kd_temperature, self.regression)
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
def _environment(**values: str) -> Iterator[None]:
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


def validate(config: FinetuneConfig) -> None:
    checks = [(config.epochs > 0, "--epochs must be positive"), (config.lr > 0, "--lr must be positive"),
              (config.batch_size > 0, "--batch-size must be positive"),
              (config.max_seq_len is None or config.max_seq_len > 1, "--max-seq-len must be at least 2"),
              (config.max_steps is None or config.max_steps > 0, "--max-steps must be positive"),
              (config.max_train_samples is None or config.max_train_samples > 0,
               "--max-train-samples must be positive"),
              (config.max_eval_samples is None or config.max_eval_samples > 0, "--max-eval-samples must be positive"),
              (0 <= config.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)"),
              (0 <= config.kd_alpha <= 1, "--kd-alpha must be in [0, 1]"),
              (config.kd_temperature > 0, "--kd-temperature must be positive"),
              (config.task in ("auto", "classification", "regression"), "--task is auto, classification or regression"),
              (config.device in ("auto", "cpu", "cuda"), "--device is auto, cpu or cuda"),
              (config.device != "cuda" or torch.cuda.is_available(), "--device cuda was asked but no GPU is visible")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def output_folder(config: FinetuneConfig) -> Path:
    model = Path(config.model)
    output = Path(config.output) if config.output else model.with_name(model.name + "-finetuned")
    if output.resolve() == model.resolve():
        raise UserError("--output must differ from the model folder (fine-tuning never overwrites its input)")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
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
    from transformers import DataCollatorWithPadding, set_seed

    # Check everything a user can get wrong before anything is written.
    validate(config)
    model_dir = check_model_folder(config.model, "model")
    output = output_folder(config)
    files = {"training": config.train_file, "validation": config.validation_file}
    train_rows = read_table(config.train_file, "training")
    validation_rows = read_table(config.validation_file, "validation")
    task = resolve_task(train_rows, validation_rows, config, files)
    metric = resolve_metric(task, config.metric)
    tokenizer = load_tokenizer(model_dir, "model")
    teacher = None
    if config.teacher is not None:
        teacher = load_teacher(check_model_folder(config.teacher, "teacher"), task, tokenizer)
    set_seed(config.seed)  # the new head's initial weights
    model = load_student(model_dir, task)
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
    with _environment(TENSORBOARD_LOGGING_DIR=str(staging / "tensorboard")):  # read by the Trainer's callback
        trainer = _trainer_class()(
            model=model, args=args, train_dataset=train_data, eval_dataset=validation_data,
            processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=metrics_function(task, metric), teacher=teacher,
            kd_alpha=config.kd_alpha if teacher is not None else 0.0, kd_temperature=config.kd_temperature,
            regression=task.regression)
    main = trainer.is_world_process_zero()
    if main:
        kd = f", KD from {config.teacher} (alpha {config.kd_alpha}, T {config.kd_temperature})" if teacher else ""
        print(f"fine-tuning {model_dir} ({type(model).__name__}) on {len(train_data):,} training and "
              f"{len(validation_data):,} validation examples: {task.describe()}{kd}")

    try:
        train_metrics = {**trainer.train().metrics, "train_samples": len(train_data)}
        if teacher is not None:
            train_metrics["train_kd_loss"] = trainer.kd_loss_sum / max(1, trainer.kd_loss_steps)
        eval_metrics = {**trainer.evaluate(), "eval_samples": len(validation_data)}  # the best epoch's model
        if main:
            trainer.save_model(str(staging))  # model, config, tokenizer
            copy_code_files(model_dir, staging)
            settings = {**asdict(config), "output": str(output), "text_columns": task.text_columns,
                        "labels": task.labels, "metric": metric, "max_seq_len": max_seq_len}
            for name, values in (("eval_results", eval_metrics), ("train_results", train_metrics),
                                 ("finetune_args", settings)):
                (staging / f"{name}.json").write_text(json.dumps(values, indent=2) + "\n")
            shutil.rmtree(staging / "checkpoints", ignore_errors=True)
            if output.exists():
                output.rmdir()  # checked empty above
            staging.rename(output)
    except BaseException:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if main:
        print(format_metrics(eval_metrics, metric))
        print(f"wrote {output}")
    return eval_metrics


def format_metrics(metrics: dict[str, float], metric: str) -> str:
    names = [metric] + [m for m in (*CLASSIFICATION_METRICS, *REGRESSION_METRICS) if m != metric]
    shown = [f"{name} {metrics['eval_' + name]:.4f}" for name in names if f"eval_{name}" in metrics]
    return "validation: " + "  ".join(shown + [f"loss {metrics['eval_loss']:.4f}"])
