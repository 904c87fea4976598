"""Task metrics: accuracy, F1, Matthews, Pearson / Spearman, picked to fit the task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nasbert.errors import UserError
from nasbert.finetune.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, Task


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


def metrics_function(task: Task, metric: str, train_labels: Sequence[float | int] | None = None
                     ) -> Callable[[Any], dict[str, float]]:
    """compute_metrics for the Trainer: accuracy (+F1 if binary, +Matthews if asked), or Pearson and Spearman.
    With the training labels, also what a model that learnt nothing from its inputs scores on these rows, which
    `stall_note` reads: regression, the model's mse and constant_mse (always predicting the training labels' mean);
    classification, majority_accuracy (always predicting one class, the best one for these rows)."""
    constant = None if train_labels is None or not task.regression else float(np.mean(train_labels))

    def compute(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        labels = np.asarray(eval_prediction.label_ids)
        if task.regression:
            from scipy.stats import pearsonr, spearmanr

            predictions = np.asarray(logits, dtype=np.float64).reshape(-1)
            labels = labels.astype(np.float64).reshape(-1)
            out = {} if constant is None else {"mse": float(np.mean((predictions - labels) ** 2)),
                                               "constant_mse": float(np.mean((constant - labels) ** 2))}
            if np.ptp(predictions) == 0 or np.ptp(labels) == 0:  # correlation undefined: say "no correlation"
                return {"pearson": 0.0, "spearman": 0.0, **out}
            return {"pearson": float(pearsonr(predictions, labels)[0]),
                    "spearman": float(spearmanr(predictions, labels)[0]), **out}
        predictions = np.asarray(logits).argmax(axis=-1)
        out = {"accuracy": float(np.mean(predictions == labels))}
        if train_labels is not None:
            out["majority_accuracy"] = float(np.bincount(labels.astype(np.int64)).max() / max(1, labels.size))
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


def stall_note(metrics: dict[str, float]) -> str | None:
    """Why a fine-tune's validation figures (eval_results.json's keys) are no better than a constant prediction
    of its training labels, or None where they are better or the figures are not there (older runs)."""
    if "eval_constant_mse" in metrics and metrics["eval_mse"] >= metrics["eval_constant_mse"]:
        return (f"its validation MSE {metrics['eval_mse']:.4f} is no lower than the {metrics['eval_constant_mse']:.4f}"
                " of always predicting the training labels' mean")
    if "eval_majority_accuracy" in metrics and metrics["eval_accuracy"] <= metrics["eval_majority_accuracy"]:
        return (f"its validation accuracy {metrics['eval_accuracy']:.4f} is no higher than the "
                f"{metrics['eval_majority_accuracy']:.4f} of always predicting the validation rows' most common class")
    return None
