"""The fine-tuned model where it is served (finetune / distill --onnx [--int8]): exported to ONNX and scored on
the validation rows in onnxruntime with the metric code the Trainer used, beside the PyTorch scores.

    OUTPUT/model.onnx        the classifier / regressor: input_ids, attention_mask, token_type_ids (B, T) -> logits
                             (B, labels), dynamic batch and sequence axes, checked against PyTorch (≤ 1e-4)
    OUTPUT/model.int8.onnx   --int8: quantized from it (onnxruntime dynamic quantization, see export.serving)
    OUTPUT/onnx_eval.json    the scores, the INT8 graph's agreement with the fp32 graph, the parity, the seconds
                             each graph took to score the rows, and latency per runtime at batch 1 x max-seq-len

eval_results.json gets `onnx_fp32_<metric>` (and `onnx_int8_<metric>`, `onnx_int8_agreement`) beside the
Trainer's `eval_<metric>`. The rows are batched and padded as the Trainer's evaluation batches them, so the fp32
graph's predictions are the PyTorch model's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from nasbert.export.serving import runtime_conditions, runtime_latency_ms, session, write_graphs
from nasbert.finetune.config import Task
from nasbert.finetune.metrics import metrics_function

PREFIXES = {"onnxruntime_fp32": "onnx_fp32", "onnxruntime_int8": "onnx_int8"}  # runtime key -> score prefix


def evaluate_onnx(model: nn.Module, folder: Path, validation_data, tokenizer, task: Task, metric: str, int8: bool,
                  batch_size: int, seq_len: int) -> dict[str, float]:
    """Write the graphs of `model` (moved to the CPU, fp32) into `folder`, score them on `validation_data` (the
    encoded rows the Trainer evaluated) and write onnx_eval.json; returns the scores, onnx_fp32_<name> etc."""
    model = model.float().cpu().eval()
    graphs, max_abs_diff = write_graphs(model, folder, int8)
    compute = metrics_function(task, metric)
    labels = np.asarray(validation_data["labels"])
    scores: dict[str, float] = {}
    outputs, seconds = {}, {}
    for name, path in graphs.items():
        start = time.perf_counter()
        outputs[name] = graph_logits(session(path, torch.get_num_threads()), validation_data, tokenizer, batch_size)
        seconds[PREFIXES[name]] = round(time.perf_counter() - start, 3)
        values = compute(SimpleNamespace(predictions=outputs[name], label_ids=labels))
        scores.update({f"{PREFIXES[name]}_{key}": value for key, value in values.items()})
    if len(outputs) > 1 and not task.regression:  # share of rows the INT8 graph predicts as the fp32 graph does
        fp32, quantized = (outputs[name].argmax(axis=-1) for name in graphs)
        scores["onnx_int8_agreement"] = float(np.mean(fp32 == quantized))
    threads = torch.get_num_threads()
    record = {"scores": scores, "onnx_max_abs_diff": max_abs_diff, "validation_rows": len(labels),
              "score_seconds": seconds, "files": {PREFIXES[name]: path.name for name, path in graphs.items()},
              "latency_ms": runtime_latency_ms(model, graphs, 1, seq_len, threads),
              "latency_conditions": runtime_conditions(1, seq_len, threads)}
    (folder / "onnx_eval.json").write_text(json.dumps(record, indent=2) + "\n")
    return scores


def graph_logits(graph, rows, tokenizer, batch_size: int) -> np.ndarray:
    """The graph's logits (N, labels) on encoded rows, in batches of `batch_size` padded to their longest row."""
    names = [node.name for node in graph.get_inputs()]
    columns = [c for c in rows.column_names if c != "labels"]
    logits = []
    for start in range(0, len(rows), batch_size):
        part = rows[start:start + batch_size]  # column -> list of rows
        features = [{c: part[c][i] for c in columns} for i in range(len(part[columns[0]]))]
        batch = tokenizer.pad(features, padding=True, return_tensors="np")
        ids = np.asarray(batch["input_ids"], dtype=np.int64)
        feed = {name: np.asarray(batch[name], dtype=np.int64) if name in batch else np.zeros_like(ids)
                for name in names}
        logits.append(graph.run(["logits"], feed)[0])
    return np.concatenate(logits)

