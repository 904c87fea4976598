"""The exported graphs in the runtimes they are served with: INT8 dynamic quantization, ONNX Runtime sessions,
the INT8 graph's deviation on real text, and latency per runtime measured side by side.

    graphs = write_graphs(model, folder, int8=True)      # {"onnxruntime_fp32": model.onnx, "onnxruntime_int8": ...}
    cosine = encoder_cosine(session(graphs["onnxruntime_fp32"]), session(graphs["onnxruntime_int8"]), batch)
    ms = runtime_latency_ms(model, graphs, batch_size=1, seq_len=128, threads=2)   # + "torch_fp32"

Quantization and sessions are the latency table's own (`nasbert.latency.runtimes.quantize_int8`, `ort_session`:
onnxruntime's `quantize_dynamic`, QInt8 weights per output channel, MatMul nodes only), so a table profiled with
`--runtime onnxruntime --precision int8` times the graph that is served.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nasbert.export.onnx import accepted_inputs, check_onnx_parity, export_onnx, require_onnx
from nasbert.latency.runtimes import ort_session as session
from nasbert.latency.runtimes import quantize_int8

FP32, INT8, TORCH = "onnxruntime_fp32", "onnxruntime_int8", "torch_fp32"  # runtime keys, as in the JSON files
# Real text for the INT8 deviation when an export has no corpus of its own (no refinement).
FIXED_TEXTS = (
    "The film is a charming and often moving portrait of a family that refuses to give up.",
    "After the storm passed, the villagers rebuilt the bridge with stones carried from the river bed.",
    "Stock prices fell sharply on Monday as investors worried about rising interest rates.",
    "She opened the old letter slowly, afraid of what her grandfather might have written.",
    "The committee will publish its final report on water quality before the end of the year.",
    "It is neither funny nor clever, and the second half drags on far too long.",
    "Researchers found that the new vaccine protected mice against several strains of the virus.",
    "The museum's collection includes paintings, maps and instruments from the eighteenth century.",
)


def write_graphs(model: nn.Module, folder: Path, int8: bool) -> tuple[dict[str, Path], float]:
    """model.onnx in `folder` (checked against PyTorch, ≤ 1e-4) and, with `int8`, model.int8.onnx quantized
    from it; returns ({runtime key: path}, the fp32 graph's max abs difference to PyTorch)."""
    require_onnx(int8)
    fp32 = export_onnx(model, folder / "model.onnx", seq_len=serving_seq_len(model.config))
    max_abs_diff = check_onnx_parity(model, fp32)
    graphs = {FP32: fp32}
    if int8:
        graphs[INT8] = quantize_int8(fp32, folder / "model.int8.onnx")
    return graphs, max_abs_diff


def serving_facts(encoder: nn.Module, folder: Path, tokenizer, int8: bool, texts: list[str] | None,
                  threads: int | None) -> dict:
    """What export records of an encoder's graphs (written to `folder`): the fp32 graph's parity; with `int8`
    the INT8 graph's cosine to the fp32 graph on `texts`; with `threads` the latency per runtime at batch 1 x 128."""
    graphs, max_abs_diff = write_graphs(encoder, folder, int8)
    facts: dict = {"onnx_max_abs_diff": max_abs_diff}
    seq_len = serving_seq_len(encoder.config)
    if int8:
        batch = text_batch(tokenizer, texts or list(FIXED_TEXTS), seq_len)
        facts["onnx_int8_cosine"] = encoder_cosine(session(graphs[FP32]), session(graphs[INT8]), batch)
        facts["onnx_int8_texts"] = len(batch["input_ids"])
    if threads:
        facts["runtime_latency_ms"] = runtime_latency_ms(encoder, graphs, 1, seq_len, threads)
        facts["runtime_latency_conditions"] = runtime_conditions(1, seq_len, threads)
    return facts


def serving_seq_len(config) -> int:
    """128 tokens, or fewer where the model has fewer positions: 2 under them, since RoBERTa-style models number
    positions from the pad id + 1."""
    return min(128, config.max_position_embeddings - 2)


def runtime_conditions(batch_size: int, seq_len: int, threads: int) -> dict:
    """What a runtime_latency_ms figure holds for."""
    return {"batch_size": batch_size, "seq_len": seq_len, "threads": threads,
            "onnxruntime_version": importlib.import_module("onnxruntime").__version__,
            "torch_version": torch.__version__.split("+")[0]}


def graph_feed(graph, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs `graph` (a session) takes, int64 (B, T), from a tokenizer's batch; token types 0 and a mask
    of ones where the batch has none (the exporter pruned the inputs the model never reads)."""
    ids = np.asarray(batch["input_ids"], dtype=np.int64)
    default = {"attention_mask": np.ones_like(ids)}
    return {node.name: np.asarray(batch[node.name], dtype=np.int64) if node.name in batch
            else default.get(node.name, np.zeros_like(ids)) for node in graph.get_inputs()}


def text_batch(tokenizer, texts: list[str], seq_len: int) -> dict[str, np.ndarray]:
    """`texts` tokenized, padded to the longest and cut at `seq_len`: int64 arrays (B, T) by input name."""
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=seq_len, return_tensors="np")
    return {name: np.asarray(value, dtype=np.int64) for name, value in encoded.items()}


def encoder_cosine(reference, quantized, batch: Mapping[str, np.ndarray], output: str = "last_hidden_state") -> float:
    """Cosine similarity of two graphs' `output` (B, T, H), each example's unpadded positions flattened into one
    vector, averaged over the examples."""
    mask = np.asarray(batch.get("attention_mask", np.ones_like(batch["input_ids"])))[..., None]  # (B, T, 1)
    a = (reference.run([output], graph_feed(reference, batch))[0] * mask).reshape(len(mask), -1)  # (B, T*H)
    b = (quantized.run([output], graph_feed(quantized, batch))[0] * mask).reshape(len(mask), -1)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return float(np.mean(np.sum(a * b, axis=1) / norms))


def sample_texts(files: list[str], text_column: str = "text", count: int = 8, min_words: int = 8) -> list[str]:
    """The first `count` texts of at least `min_words` words of a corpus (headings and fragments skipped), or
    FIXED_TEXTS where it has fewer."""
    from nasbert.common.data import load_text

    texts = []
    for row in load_text(files, text_column):
        if len(row["text"].split()) >= min_words:
            texts.append(row["text"].strip())
            if len(texts) == count:
                return texts
    return list(FIXED_TEXTS[:count])


def runtime_latency_ms(model: nn.Module, graphs: Mapping[str, Path], batch_size: int, seq_len: int, threads: int,
                       rounds: int = 7, min_block_s: float = 0.02) -> dict[str, float]:
    """Median ms per call of `model` in PyTorch fp32 (key "torch_fp32") and of each graph in onnxruntime, on one
    unpadded batch of random tokens (batch_size, seq_len), with `threads` threads in every runtime.

    Timed in interleaved rounds (torch, fp32 graph, int8 graph, torch, ...) so that drift hits all alike; a round
    times each runtime for at least `min_block_s` (several calls for a tiny model). Informative, not a gate.
    """
    config = model.config
    rng = np.random.default_rng(0)
    batch = {"input_ids": rng.integers(0, config.vocab_size, size=(batch_size, seq_len), dtype=np.int64),
             "attention_mask": np.ones((batch_size, seq_len), dtype=np.int64),
             "token_type_ids": np.zeros((batch_size, seq_len), dtype=np.int64)}
    device = next(model.parameters()).device
    tensors = accepted_inputs(model, {name: torch.from_numpy(value).to(device) for name, value in batch.items()})
    model = model.eval()

    def torch_call() -> None:
        with torch.inference_mode():
            model(**tensors)

    calls: dict[str, Callable[[], object]] = {TORCH: torch_call}
    for name, path in graphs.items():
        graph = session(path, threads)
        feed = graph_feed(graph, batch)
        calls[name] = lambda graph=graph, feed=feed: graph.run(None, feed)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _interleaved_medians_ms(calls, rounds, min_block_s)
    finally:
        torch.set_num_threads(saved)


def _interleaved_medians_ms(calls: Mapping[str, Callable[[], object]], rounds: int, min_block_s: float
                            ) -> dict[str, float]:
    repeats = {}
    for name, call in calls.items():  # warm-up, and how many calls make a block of min_block_s
        call()
        start = time.perf_counter()
        call()
        repeats[name] = max(1, int(min_block_s / max(time.perf_counter() - start, 1e-6)))
    per_call: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            # A pause and one untimed call first: the previous runtime's idle threads park (torch's OpenMP pool
            # spins briefly after a call) and this one's caches and pool are warm again.
            time.sleep(0.05)
            call()
            start = time.perf_counter()
            for _ in range(repeats[name]):
                call()
            per_call[name].append((time.perf_counter() - start) / repeats[name] * 1000)
    return {name: statistics.median(values) for name, values in per_call.items()}
