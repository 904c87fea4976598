"""ONNX Runtime INT8 where students are served: the quantized graph runs with dynamic axes and stays close to fp32;
finetune / distill --onnx --int8 score the graphs with the Trainer's metric code (the fp32 graph's score is
PyTorch's); a missing onnxruntime is one sentence naming the extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_finetune import write_tsv
from tiny_assets import write_vocab
from transformers import AutoTokenizer, BertConfig, BertModel, BertTokenizer

from nasbert import NasbertConfig, NasbertForSequenceClassification, NasbertModel
from nasbert.cli import main
from nasbert.registration import save_student

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from nasbert.export import serving  # noqa: E402
from nasbert.export.onnx import padded_inputs  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
ARCH = "32:M,F,S3,I/16:S5,M,F,F"  # every op family, so MatMul and convolutions are both in the graph


def tiny_encoder(seed: int = 0) -> NasbertModel:
    torch.manual_seed(seed)
    return NasbertModel(NasbertConfig(arch=ARCH, vocab_size=99, embedding_size=24, hidden_size=32, head_dim=8,
                                      max_position_embeddings=64), add_pooling_layer=False)


def test_int8_graph_runs_at_other_batch_sizes_and_lengths_close_to_fp32(tmp_path):
    model = tiny_encoder()
    graphs, max_abs_diff = serving.write_graphs(model, tmp_path, int8=True)
    assert max_abs_diff <= 1e-4  # the fp32 graph against PyTorch (check_onnx_parity, another shape than traced)
    assert graphs[serving.INT8] == tmp_path / "model.int8.onnx"
    int8_nodes = {node.op_type for node in onnx.load(str(graphs[serving.INT8])).graph.node}
    assert "MatMulInteger" in int8_nodes and "DynamicQuantizeLinear" in int8_nodes  # int8 weights, not a copy
    fp32, int8 = serving.session(graphs[serving.FP32]), serving.session(graphs[serving.INT8])
    for batch_size, seq_len in ((3, 23), (1, 9)):
        batch = padded_inputs(model.config, batch_size, seq_len, seed=seq_len)
        (hidden,) = int8.run(["last_hidden_state"], serving.graph_feed(int8, batch))
        assert hidden.shape == (batch_size, seq_len, 32)
        assert 0.9 <= serving.encoder_cosine(fp32, int8, batch) <= 1 + 1e-6
    # the figure falls when the graphs differ: a graph of other weights is far from this one
    other_graphs, _ = serving.write_graphs(tiny_encoder(seed=1), tmp_path / "other", int8=False)
    batch = padded_inputs(model.config, 2, 16)
    assert serving.encoder_cosine(fp32, serving.session(other_graphs[serving.FP32]), batch) < 0.9


def test_runtime_latency_reports_every_runtime(tmp_path):
    model = tiny_encoder()
    graphs, _ = serving.write_graphs(model, tmp_path, int8=True)
    latency = serving.runtime_latency_ms(model, graphs, batch_size=1, seq_len=32, threads=1, rounds=3,
                                         min_block_s=0.005)
    assert set(latency) == {"torch_fp32", "onnxruntime_fp32", "onnxruntime_int8"}
    assert all(0 < ms < 1000 for ms in latency.values())


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict[str, Path]:
    """A tiny student, a tiny BERT and a tiny sentiment task."""
    root = tmp_path_factory.mktemp("onnx-task")
    (root / "tokenizer").mkdir()
    tokenizer = BertTokenizer(vocab=str(write_vocab(root / "tokenizer" / "vocab.txt")))
    torch.manual_seed(0)
    student = NasbertForSequenceClassification(NasbertConfig(
        arch="32:M,F/16:S3,F", vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, head_dim=8,
        max_position_embeddings=64, num_labels=2))
    dev = write_tsv(root / "dev.tsv", 40, 1)
    sentences = [line.split("\t")[0] for line in dev.read_text().splitlines()[1:]]
    with torch.no_grad():  # a large random head, its bias at the median logit gap: mixed predictions from the start
        for layer in (student.nasbert.pooler.dense, student.classifier):
            layer.weight.normal_(std=1.0)
        logits = student.eval()(**tokenizer(sentences, padding=True, return_tensors="pt")).logits  # (40, 2)
        gaps = (logits[:, 1] - logits[:, 0]).sort().values
        student.classifier.bias[1] -= (gaps[19] + gaps[20]) / 2
    student = save_student(student, root / "student", tokenizer)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    return {"root": root, "student": student, "bert": root / "bert", "train": write_tsv(root / "train.tsv", 96, 0),
            "dev": dev}


def finetune_args(task, model: str, output: Path, *flags: str) -> list[str]:
    return ["finetune", str(task[model]), "--train-file", str(task["train"]), "--validation-file", str(task["dev"]),
            "--output", str(output), "--batch-size", "16", "--lr", "1e-3", "--epochs", "1", "--report-to", "none",
            *flags]


def check_scores(output: Path, metric: str = "accuracy") -> dict:
    """eval_results.json holds the graphs' scores; the fp32 graph scores what PyTorch scored (same predictions)."""
    results = json.loads((output / "eval_results.json").read_text())
    assert results[f"onnx_fp32_{metric}"] == results[f"eval_{metric}"]
    assert 0 <= results[f"onnx_int8_{metric}"] <= 1 and 0.5 <= results["onnx_int8_agreement"] <= 1
    record = json.loads((output / "onnx_eval.json").read_text())
    assert record["onnx_max_abs_diff"] <= 1e-4 and record["validation_rows"] == 40
    assert set(record["latency_ms"]) == {"torch_fp32", "onnxruntime_fp32", "onnxruntime_int8"}
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in onnx.load(str(output / "model.int8.onnx")).graph.output}
    assert dims == {"logits": ["batch", 2]}  # dynamic batch, the task's labels
    return results


def test_finetune_and_distill_score_the_onnx_graphs(task, tmp_path, capsys):
    teacher = tmp_path / "teacher"  # a plain transformers BERT, fine-tuned as a teacher for KD
    assert main(finetune_args(task, "bert", teacher, "--onnx", "--int8", "--lr", "3e-3")) == 0
    check_scores(teacher)
    assert "onnx fp32 accuracy" in capsys.readouterr().out

    student = tmp_path / "student"
    assert main(finetune_args(task, "student", student, "--onnx", "--int8", "--max-steps", "1", "--lr", "1e-7")) == 0
    results = check_scores(student)
    rows = [line.split("\t") for line in task["dev"].read_text().splitlines()[1:]]
    graph = serving.session(student / "model.onnx")  # scored here by hand, all rows in one padded batch
    batch = serving.text_batch(AutoTokenizer.from_pretrained(student), [text for text, _ in rows], 64)
    predictions = graph.run(["logits"], serving.graph_feed(graph, batch))[0].argmax(axis=-1)
    assert set(predictions) == {0, 1}
    assert results["eval_accuracy"] == np.mean(predictions == np.array([int(label) for _, label in rows]))

    distilled = tmp_path / "distilled"
    assert main(["distill", *finetune_args(task, "student", distilled, "--onnx", "--int8")[1:], "--teacher",
                 str(teacher), "--recipe", "kd", "--max-steps", "3"]) == 0
    check_scores(distilled)
    assert {"model.onnx", "model.int8.onnx", "stages.json"} <= {p.name for p in distilled.iterdir()}


def test_without_onnxruntime_onnx_is_one_sentence_naming_the_extra(task, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    runs = [finetune_args(task, "student", tmp_path / "ft", "--onnx"),
            ["export", str(tmp_path / "run"), "--arch", "32:M", "--output", str(tmp_path / "ex"), "--onnx", "--int8"]]
    for args in runs:
        assert main(args) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(errors) == 1 and "pip install nasbert[onnx]" in errors[0], errors
    assert not (tmp_path / "ft").exists() and not (tmp_path / "ex").exists()


def test_int8_without_onnx_is_refused(task, tmp_path, capsys):
    for args in (finetune_args(task, "student", tmp_path / "ft", "--int8"),
                 ["export", str(tmp_path / "run"), "--arch", "32:M", "--output", str(tmp_path / "ex"), "--int8"]):
        assert main(args) == 2
        assert "--int8 quantizes the ONNX graph; add --onnx" in capsys.readouterr().err


def test_int8_deviation_texts_come_from_the_refinement_corpus(tmp_path):
    corpus = tmp_path / "corpus.txt"
    lines = [" = A heading = ", "", *(f"sentence {i} has more than eight words in it , surely" for i in range(12))]
    corpus.write_text("\n".join(lines) + "\n")
    texts = serving.sample_texts([str(corpus)], count=8)
    assert texts == [line.strip() for line in lines[2:10]]  # headings and fragments skipped
    assert serving.sample_texts([str(corpus)], count=8, min_words=50) == list(serving.FIXED_TEXTS)
