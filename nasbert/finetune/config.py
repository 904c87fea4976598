"""Stage 5's options (FinetuneConfig), the task description and the metric names.

Light (no torch): the command line imports it to build `--help`; each field's help is the flag's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """Every finetune option; `nasbert finetune` makes one flag (or, for `model`, the argument) of each field."""

    model: str = field(metadata={
        "positional": True, "help": "a student folder from `nasbert export`, or any Hugging Face encoder folder "
                                    "(e.g. the teacher, to fine-tune it for KD)"})
    train_file: str = field(metadata={"help": "training data: GLUE-style .tsv with a header row, .csv or .jsonl"})
    validation_file: str = field(metadata={"help": "validation data, same format"})
    output: str | None = field(default=None, metadata={
        "help": "output folder (default: MODEL-finetuned); must not exist or be empty"})
    text_columns: list[str] | None = field(default=None, metadata={
        "metavar": "COLUMN", "help": "one column, or two for sentence pairs (default: detected: sentence; sentence1 "
                                     "sentence2; question sentence; ...)"})
    label_column: str = field(default="label", metadata={"help": "label column"})
    task: str = field(default="auto", metadata={
        "choices": ("auto", "classification", "regression"),
        "help": "auto: float labels mean regression (e.g. STS-B), anything else classification"})
    metric: str | None = field(default=None, metadata={
        "choices": CLASSIFICATION_METRICS + REGRESSION_METRICS,
        "help": "metric that picks the best epoch (default: accuracy, or pearson for regression; matthews for CoLA)"})
    epochs: float = field(default=3.0, metadata={"help": "training epochs"})
    lr: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    batch_size: int = field(default=32, metadata={"help": "examples per step and process"})
    max_seq_len: int | None = field(default=None, metadata={
        "help": "tokens per example, longer ones truncated (default 128, or the model's positions if fewer)"})
    max_steps: int | None = field(default=None, metadata={
        "help": "stop after this many optimizer steps (overrides --epochs)"})
    max_train_samples: int | None = field(default=None, metadata={
        "help": "train on a seeded random subset of this size"})
    max_eval_samples: int | None = field(default=None, metadata={
        "help": "evaluate on a seeded random subset of this size"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps with linear warmup"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=0, metadata={"help": "seed of the new head, shuffling and dropout"})
    teacher: str | None = field(default=None, metadata={
        "help": "a teacher fine-tuned on this task (same tokenizer): adds logit distillation"})
    kd_alpha: float = field(default=0.5, metadata={"help": "loss = (1 - alpha) task loss + alpha KD loss"})
    kd_temperature: float = field(default=1.0, metadata={
        "help": "softmax temperature T of the KD loss (scaled by T^2)"})
    onnx: bool = field(default=False, metadata={
        "help": "also export the fine-tuned model to OUTPUT/model.onnx (logits, dynamic batch and sequence axes), "
                "checked against PyTorch, and score it on the validation file in onnxruntime (onnx_fp32_* in "
                "eval_results.json, onnx_eval.json); needs pip install nasbert[onnx]"})
    int8: bool = field(default=False, metadata={
        "help": "with --onnx: also OUTPUT/model.int8.onnx (onnxruntime dynamic quantization, int8 weights), scored "
                "the same way (onnx_int8_*)"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "let a model or teacher folder that is not a nasbert student run its own Python code (the files "
                "its config's auto_map names); nasbert's students never need it"})
    device: str = field(default="auto", metadata={
        "choices": ("auto", "cpu", "cuda"), "help": "auto: cuda if visible"})
    report_to: str = field(default="tensorboard", metadata={
        "choices": ("tensorboard", "none"), "help": "training scalars to OUTPUT/tensorboard, or nowhere"})


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
