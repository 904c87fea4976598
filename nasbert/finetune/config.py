"""Stage 5's options (FinetuneConfig), the task description and the metric names."""

from __future__ import annotations

from dataclasses import dataclass

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
