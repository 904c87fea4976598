"""The README.md model card of an exported student: where it came from, what it costs, how it was measured."""

from __future__ import annotations

import json


def _conditions(conditions: dict | None) -> str:
    if not conditions:
        return "conditions not recorded"
    keys = ("device", "device_name", "threads", "batch_size", "seq_len", "dtype", "torch_version", "date")
    return ", ".join(f"{k} {conditions[k]}" for k in keys if k in conditions)


def _ms(value) -> str:
    return f"{value:.2f} ms" if isinstance(value, (int, float)) else "not measured"


def model_card(facts: dict) -> str:
    """Markdown; `facts` is what export gathered (also saved as nasbert_export.json)."""
    refine = facts.get("refine")
    search = facts.get("search") or {}
    lines = [
        "---", "library_name: transformers", "tags: [nasbert, nas-bert, distillation, fill-mask]", "---", "",
        f"# {facts['name']}: a NAS-BERT student of {facts['teacher']}", "",
        "A task-agnostic student found by nasbert (NAS-BERT search + ETD inheritance). Fine-tune it like any "
        "encoder:", "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "model = AutoModelForSequenceClassification.from_pretrained(FOLDER, trust_remote_code=True, num_labels=2)",
        "tokenizer = AutoTokenizer.from_pretrained(FOLDER)",
        "```", "",
        "| | |", "| --- | --- |",
        f"| architecture | `{facts['arch']}`"
        + (f" with a narrower FFN (inner {facts['ffn_ratio']} x width)" if facts.get("ffn_ratio") else "") + " |",
        f"| parameters | {facts['params']:,} (embeddings + encoder) |",
        f"| FLOPs | {facts['flops'] / 1e9:.3f} G (batch 1 x seq 128) |",
        f"| embedding size | {facts['embedding_size']} |",
        f"| teacher | {facts['teacher']} |",
        f"| supernet run | {facts['supernet_run']} (trained on {', '.join(facts['supernet_data'])}) |",
        f"| initialisation | {facts['init']} |",
    ]
    if search:
        lines += [f"| search budget | {search.get('budget')} (rank {search.get('rank')}) |",
                  f"| approximated loss | {search.get('approx_loss')} ({_approximator(search.get('block_weights'))}) |",
                  f"| re-checked chained loss | {search.get('rechecked_loss')} |"]
    lines += [f"| predicted latency | {_ms(facts.get('predicted_latency_ms'))} "
              f"({_conditions(facts.get('latency_conditions'))}) |",
              f"| measured latency | {_ms(facts.get('measured_latency_ms'))} "
              f"({_conditions(facts.get('measured_conditions'))}) |"]
    if refine:
        lines += [f"| refinement | {refine['steps']} steps on {', '.join(refine['data'])} |",
                  f"| refinement losses | {', '.join(refine['losses'])} (lambda {refine['kl_lambda']}) |",
                  f"| final losses | {json.dumps(refine['final_losses'])} |"]
        lines += [f"| note | {note} |" for note in refine.get("notes", [])]
    else:
        lines.append("| refinement | none |")
    lines += _serving_rows(facts)
    lines += ["", "Latencies are for the bare encoder (no task head); re-measure on your own machine with "
              "`nasbert latency measure FOLDER`.", ""]
    return "\n".join(lines)


RUNTIME_NAMES = {"torch_fp32": "PyTorch fp32", "onnxruntime_fp32": "ONNX Runtime fp32",
                 "onnxruntime_int8": "ONNX Runtime INT8"}


def _serving_rows(facts: dict) -> list[str]:
    """The ONNX graphs, the INT8 graph's deviation and the latency per runtime (export --onnx [--int8])."""
    rows = []
    if "onnx_max_abs_diff" in facts:
        rows.append(f"| ONNX | model.onnx (the bare encoder, dynamic batch and sequence axes), max abs difference to "
                    f"PyTorch {facts['onnx_max_abs_diff']:.2e} |")
    if "onnx_int8_cosine" in facts:
        rows.append(f"| ONNX INT8 | model.int8.onnx (onnxruntime dynamic quantization: int8 weights per channel, "
                    f"MatMul), cosine similarity of its last hidden state to the fp32 graph's "
                    f"{facts['onnx_int8_cosine']:.4f} (mean of {facts.get('onnx_int8_texts')} real-text inputs) |")
    latency = facts.get("runtime_latency_ms")
    if latency:
        torch_ms = latency.get("torch_fp32")
        shown = [f"{RUNTIME_NAMES.get(name, name)} {ms:.2f} ms" + (f" ({torch_ms / ms:.2f}x)" if torch_ms and
                                                                    name != "torch_fp32" else "")
                 for name, ms in latency.items()]
        cond = facts.get("runtime_latency_conditions") or {}
        rows.append(f"| latency per runtime | {', '.join(shown)}; batch {cond.get('batch_size')} x "
                    f"{cond.get('seq_len')}, {cond.get('threads')} threads, median of interleaved rounds (x: speed-up "
                    f"over PyTorch fp32; informative, timed once at export) |")
    return rows


def _approximator(weights: list[float] | None) -> str:
    if not weights:
        return "sum of block dev losses"
    return "sum of block dev losses weighted " + ", ".join(f"{w:.2f}" for w in weights)
