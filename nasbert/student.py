"""Build standalone students from a space and an arch, and extract them exactly from a supernet
(`Supernet.export_state` copies the weights; this file wraps them in a student model)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nasbert.configuration_nasbert import NasbertConfig
from nasbert.modeling_nasbert import NasbertModel, NasbertPreTrainedModel
from search_space import Arch, SearchSpace
from supernet import Supernet

EMBEDDING_KEYS = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
                  "LayerNorm.weight", "LayerNorm.bias")


def student_config(space: SearchSpace, arch: Arch | str, conventions: Mapping[str, Any] | None = None,
                   **overrides: Any) -> NasbertConfig:
    """The config of a student of `arch` in `space`.

    The space gives the teacher's sizes (vocab, positions, token types, E, H); `conventions` the config keys of
    the teacher's computation that the space does not hold (hidden_act, layer_norm_eps, position_padding_idx:
    `Teacher.student_conventions()`, a plain mapping so this file stays below nasbert.common); `overrides`
    anything else (dropout, pad_token_id, num_labels, ...). Without conventions the student is BERT's.
    """
    arch = space.validate(arch)
    values = dict(arch=str(arch), vocab_size=space.vocab_size, embedding_size=space.embedding_dim,
                  hidden_size=space.hidden_size, head_dim=space.head_dim, ffn_ratio=space.ffn_ratio,
                  max_position_embeddings=space.max_position_embeddings, type_vocab_size=space.type_vocab_size)
    values.update(conventions or {})
    values.update(overrides)
    return NasbertConfig(**values)


def build_student(space: SearchSpace, arch: Arch | str, model_class: type[NasbertPreTrainedModel] = NasbertModel,
                  **config_overrides: Any) -> NasbertPreTrainedModel:
    """A randomly initialised student of `arch`."""
    return model_class(student_config(space, arch, **config_overrides))


@torch.no_grad()
def extract_student(supernet: Supernet, arch: Arch | str, teacher_embeddings: nn.Module | None = None,
                    model_class: type[NasbertPreTrainedModel] = NasbertModel,
                    **config_overrides: Any) -> NasbertPreTrainedModel:
    """A standalone student that computes what the chained supernet blocks compute for `arch`.

    With `teacher_embeddings` (a BERT-style embeddings module of the teacher, E = H), the student's
    embeddings are the teacher's, so the student equals teacher embeddings -> chained super blocks.
    """
    space = supernet.space
    model = build_student(space, arch, model_class, **config_overrides)
    base = model.base_model
    state = supernet.export_state(arch)
    if teacher_embeddings is not None:
        if space.embedding_dim != space.hidden_size:
            raise ValueError("the teacher's embeddings can only be inherited when embedding_size equals the "
                             f"teacher's hidden size ({space.hidden_size}), not {space.embedding_dim}")
        teacher_state = teacher_embeddings.state_dict()
        for key in EMBEDDING_KEYS:
            state[f"embeddings.{key}"] = teacher_state[key].detach().clone()
    missing = set(state) - set(base.state_dict())
    if missing:
        raise RuntimeError(f"extraction produced names the student does not have: {sorted(missing)[:5]}")
    base.load_state_dict(state, strict=False)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model
