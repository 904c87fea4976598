"""ONNX export of a tiny student: every head matches PyTorch in onnxruntime on padded batches of other shapes."""

from __future__ import annotations

import copy

import pytest
import torch

from nasbert import (
    NasbertConfig,
    NasbertForMaskedLM,
    NasbertForQuestionAnswering,
    NasbertForSequenceClassification,
    NasbertForTokenClassification,
    NasbertModel,
)
from nasbert.errors import UserError

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

from nasbert.export.onnx import check_onnx_parity, export_onnx  # noqa: E402

EXPORT_SEQ_LEN = 16  # export traces batch 2 at T 16; parity runs other shapes
OTHER_SHAPES = [(3, 23), (1, 9)]
HEADS = {
    NasbertModel: ["last_hidden_state", "pooler_output"],
    NasbertForMaskedLM: ["logits"],
    NasbertForSequenceClassification: ["logits"],
    NasbertForTokenClassification: ["logits"],
    NasbertForQuestionAnswering: ["start_logits", "end_logits"],
}


def tiny_student(model_class, **overrides):
    values = dict(arch="32:M,F,S3,I/16:S5,M,F,F", vocab_size=99, embedding_size=24, hidden_size=32, head_dim=8,
                  max_position_embeddings=64, num_labels=3)
    values.update(overrides)
    torch.manual_seed(0)
    return model_class(NasbertConfig(**values))


def graph_dims(path) -> dict[str, list]:
    """Each input's and output's shape in the ONNX file, a named axis as its name."""
    graph = onnx.load(str(path)).graph
    return {value.name: [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]
            for value in list(graph.input) + list(graph.output)}


@pytest.fixture(scope="module")
def mlm_export(tmp_path_factory):
    """One MLM student exported once, shared by the tests that only read it."""
    model = tiny_student(NasbertForMaskedLM)
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "mlm.onnx", seq_len=EXPORT_SEQ_LEN)
    return model, path


@pytest.mark.parametrize("model_class", list(HEADS), ids=lambda cls: cls.__name__)
def test_every_head_exports_with_parity_on_other_padded_shapes(model_class, tmp_path, mlm_export):
    if model_class is NasbertForMaskedLM:
        model, path = mlm_export
    else:
        model = tiny_student(model_class)
        path = export_onnx(model, tmp_path / "student.onnx", seq_len=EXPORT_SEQ_LEN)
    assert model.training  # the model's mode is restored

    dims = graph_dims(path)
    assert list(dims) == ["input_ids", "attention_mask", "token_type_ids", *HEADS[model_class]]
    assert dims["input_ids"] == ["batch", "sequence"]
    for batch_size, seq_len in OTHER_SHAPES:
        assert check_onnx_parity(model, path, batch_size=batch_size, seq_len=seq_len, seed=seq_len) <= 1e-4


def test_unpadded_batch_matches_the_model_without_a_mask(mlm_export):
    """The traced graph always masks; on an all-ones mask that must equal the model's unmasked shortcut."""
    model, path = mlm_export
    torch.manual_seed(1)
    input_ids = torch.randint(1, 99, (2, 11))
    with torch.no_grad():
        expected = model.eval()(input_ids).logits.numpy()
    model.train()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"input_ids": input_ids.numpy(), "attention_mask": torch.ones_like(input_ids).numpy(),
            "token_type_ids": torch.zeros_like(input_ids).numpy()}
    (logits,) = session.run(["logits"], feed)
    assert abs(logits - expected).max() <= 1e-4


def test_sequence_classification_logits_keep_num_labels_static(tmp_path):
    model = tiny_student(NasbertForSequenceClassification, num_labels=EXPORT_SEQ_LEN)  # same size as T at export
    path = export_onnx(model, tmp_path / "cls.onnx", seq_len=EXPORT_SEQ_LEN)
    assert graph_dims(path)["logits"] == ["batch", EXPORT_SEQ_LEN]
    assert check_onnx_parity(model, path, batch_size=4, seq_len=30) <= 1e-4


def test_eager_attention_exports_too(tmp_path):
    model = tiny_student(NasbertForMaskedLM)
    model.config._attn_implementation = "eager"
    path = export_onnx(model, tmp_path / "eager.onnx", seq_len=EXPORT_SEQ_LEN)
    assert check_onnx_parity(model, path, batch_size=3, seq_len=21) <= 1e-4


def test_arch_without_attention_or_convolution_drops_the_unused_mask_input(tmp_path):
    model = tiny_student(NasbertForMaskedLM, arch="32:F,F/16:F")
    path = export_onnx(model, tmp_path / "ffn.onnx", seq_len=EXPORT_SEQ_LEN)
    assert "attention_mask" not in graph_dims(path)
    assert check_onnx_parity(model, path, batch_size=3, seq_len=23) <= 1e-4


def test_parity_fails_loudly_when_the_weights_differ(mlm_export):
    model, path = mlm_export
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.cls.dense.bias.add_(0.5)
    with pytest.raises(RuntimeError, match="ONNX parity failed"):
        check_onnx_parity(changed, path)


def test_user_mistakes_are_user_errors(tmp_path, mlm_export):
    model, path = mlm_export
    with pytest.raises(UserError, match="max_position_embeddings"):
        export_onnx(model, tmp_path / "long.onnx", seq_len=65)
    with pytest.raises(UserError, match="no ONNX file"):
        check_onnx_parity(model, tmp_path / "missing.onnx")
    with pytest.raises(UserError, match="another model"):
        check_onnx_parity(tiny_student(NasbertModel), path)
