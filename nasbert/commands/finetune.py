"""`nasbert finetune DIR --train-file F --validation-file F [...]`: the HF Trainer on a GLUE-style task."""

from __future__ import annotations

import argparse
from dataclasses import fields

from nasbert.commands.base import command
from nasbert.finetune.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, FinetuneConfig
from nasbert.finetune.trainer import finetune


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a student folder from `nasbert export`, or any Hugging Face encoder folder "
                        "(e.g. the teacher, to fine-tune it for KD)")
    parser.add_argument("--train-file", required=True, help="training data: GLUE-style .tsv with a header row, .csv "
                        "or .jsonl")
    parser.add_argument("--validation-file", required=True, help="validation data, same format")
    parser.add_argument("--output", help="output folder (default: MODEL-finetuned); must not exist or be empty")
    parser.add_argument("--text-columns", nargs="+", metavar="COLUMN", help="one column, or two for sentence pairs "
                        "(default: detected: sentence; sentence1 sentence2; question sentence; ...)")
    parser.add_argument("--label-column", default="label", help="label column (default: label)")
    parser.add_argument("--task", default="auto", choices=("auto", "classification", "regression"),
                        help="auto: float labels mean regression (e.g. STS-B), anything else classification")
    parser.add_argument("--metric", choices=CLASSIFICATION_METRICS + REGRESSION_METRICS,
                        help="metric that picks the best epoch (default: accuracy, or pearson for regression; "
                        "matthews for CoLA)")
    parser.add_argument("--epochs", type=float, default=3.0, help="training epochs (default 3)")
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default 5e-5)")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per step and process (default 32)")
    parser.add_argument("--max-seq-len", type=int, help="tokens per example, longer ones truncated (default 128, "
                        "or the model's positions if fewer)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (overrides --epochs)")
    parser.add_argument("--max-train-samples", type=int, help="train on a seeded random subset of this size")
    parser.add_argument("--max-eval-samples", type=int, help="evaluate on a seeded random subset of this size")
    parser.add_argument("--warmup-ratio", type=float, default=0.1, help="share of steps with linear warmup")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new head, shuffling and dropout")
    parser.add_argument("--teacher", help="a teacher fine-tuned on this task (same tokenizer): adds logit distillation")
    parser.add_argument("--kd-alpha", type=float, default=0.5, help="loss = (1 - alpha) task loss + alpha KD loss")
    parser.add_argument("--kd-temperature", type=float, default=1.0, help="softmax temperature T of the KD loss "
                        "(scaled by T^2)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda if visible")
    parser.add_argument("--report-to", default="tensorboard", choices=("tensorboard", "none"),
                        help="training scalars to OUTPUT/tensorboard, or nowhere")


@command("finetune", "fine-tune a student (or a teacher) on a sentence(-pair) task, optionally with KD", add_arguments)
def run(args: argparse.Namespace) -> int:
    finetune(FinetuneConfig(**{f.name: getattr(args, f.name) for f in fields(FinetuneConfig)}))  # flag = field
    return 0
