"""Task metrics: accuracy, F1, Matthews, Pearson / Spearman, picked to fit the task."""

from __future__ import annotations

from collections.abc import Callable
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
