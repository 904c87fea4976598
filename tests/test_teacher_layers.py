"""The teacher adaptor: a BERT teacher's parts are its own modules under one set of names; a model_type without an
adaptor is refused where the teacher is loaded, with one sentence naming the supported families."""

from __future__ import annotations

import pytest
from tiny_assets import make_tiny_teacher
from transformers import GPT2Config

from nasbert.common.teacher import TEACHER_FAMILIES, Teacher, load_teacher
from nasbert.errors import UserError


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Teacher:
    folder = make_tiny_teacher(tmp_path_factory.mktemp("teacher") / "bert", layers=4)
    return load_teacher(str(folder), num_blocks=2, with_mlm_head=True)


def test_bert_layers_are_the_bert_modules(teacher):
    assert len(teacher.encoder_layers) == 4
    for t, bert in enumerate(teacher.model.encoder.layer):
        layer = teacher.layer(t)
        assert layer.query is bert.attention.self.query
        assert layer.key is bert.attention.self.key
        assert layer.value is bert.attention.self.value
        assert layer.attn_out is bert.attention.output.dense
        assert layer.attn_norm is bert.attention.output.LayerNorm
        assert layer.ffn_in is bert.intermediate.dense
        assert layer.ffn_out is bert.output.dense
        assert layer.ffn_norm is bert.output.LayerNorm
    assert teacher.layer(-1).query is teacher.model.encoder.layer[3].attention.self.query


def test_bert_embeddings_and_mlm_head_are_the_bert_modules(teacher):
    bert = teacher.model.embeddings
    parts = teacher.embedding_parts
    assert parts.word is bert.word_embeddings and parts.position is bert.position_embeddings
    assert parts.token_type is bert.token_type_embeddings and parts.norm is bert.LayerNorm
    assert parts.position_offset == 0
    head = teacher.mlm_head_parts()
    assert head.dense is teacher.mlm_head.transform.dense and head.norm is teacher.mlm_head.transform.LayerNorm
    assert head.decoder_bias is teacher.mlm_head.bias


def test_the_registry_has_bert():
    assert "bert" in TEACHER_FAMILIES


def test_an_unknown_model_type_is_refused_where_the_teacher_is_loaded(tmp_path):
    folder = tmp_path / "gpt2"
    GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=99).save_pretrained(folder)
    with pytest.raises(UserError) as caught:
        load_teacher(str(folder))
    message = str(caught.value)
    assert "'gpt2'" in message and "supported teacher families" in message and "bert" in message
    assert len(message.splitlines()) == 1 and message.count(". ") == 0


def test_an_unknown_model_type_is_refused_by_the_adaptor(teacher):
    config = teacher.model.config
    try:
        config.model_type = "not-a-family"  # an instance attribute shadows the class's
        with pytest.raises(UserError, match="supported teacher families"):
            teacher.layer(0)
    finally:
        del config.model_type
    assert teacher.layer(0).query is teacher.model.encoder.layer[0].attention.self.query
