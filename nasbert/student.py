"""Build standalone students from a space and an arch, and extract them exactly from a supernet."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nasbert.configuration_nasbert import NasbertConfig
from nasbert.modeling_nasbert import NasbertModel, NasbertPreTrainedModel
from search_space import Arch, SearchSpace
from supernet import Supernet

EMBEDDING_KEYS = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
                  "LayerNorm.weight", "LayerNorm.bias")


def student_config(space: SearchSpace, arch: Arch | str, **overrides: Any) -> NasbertConfig:
    """The config of a student of `arch` in `space` (overrides: dropout, pad_token_id, num_labels, ...)."""
    arch = space.validate(arch)
    values = dict(arch=str(arch), vocab_size=space.vocab_size, embedding_size=space.embedding_dim,
                  hidden_size=space.hidden_size, head_dim=space.head_dim, ffn_ratio=space.ffn_ratio,
                  max_position_embeddings=space.max_position_embeddings, type_vocab_size=space.type_vocab_size)
    values.update(overrides)
    return NasbertConfig(**values)


def build_student(space: SearchSpace, arch: Arch | str, model_class: type[NasbertPreTrainedModel] = NasbertModel,
                  **config_overrides: Any) -> NasbertPreTrainedModel:
    """A randomly initialised student of `arch`."""
    return model_class(student_config(space, arch, **config_overrides))


@torch.no_grad()
def supernet_student_state(supernet: Supernet, arch: Arch | str) -> dict[str, torch.Tensor]:
    """The encoder weights of `arch` as the student names them (`encoder.*`), copied out of the supernet.

    Consecutive blocks meet through one fused projection: in_{n+1}(out_n(x)) = W x + b with
    W = W_in W_out (w_{n+1} x w_n) and b = W_in b_out + b_in.
    """
    space = supernet.space
    arch = space.validate(arch)
    state: dict[str, torch.Tensor] = {}
    h = space.hidden_size
    for n, (block, block_arch) in enumerate(zip(supernet.blocks, arch)):
        w = block_arch.width
        w_in, b_in = block.in_proj.weight[:w, :h], block.in_proj.bias[:w]
        if n > 0:
            previous = supernet.blocks[n - 1]
            w_prev = arch[n - 1].width
            w_out, b_out = previous.out_proj.weight[:h, :w_prev], previous.out_proj.bias[:h]
            w_in, b_in = w_in @ w_out, w_in @ b_out + b_in
        prefix = f"encoder.blocks.{n}"
        state[f"{prefix}.projection.weight"], state[f"{prefix}.projection.bias"] = w_in, b_in
        for j, op in enumerate(block_arch.active_ops):
            layer = block.layers[j]
            for key, value in layer.ops[op].export(w).items():
                state[f"{prefix}.layers.{j}.op.{key}"] = value
            norm = layer.norms[f"{op}_{w}"]
            state[f"{prefix}.layers.{j}.LayerNorm.weight"] = norm.weight
            state[f"{prefix}.layers.{j}.LayerNorm.bias"] = norm.bias
    last = supernet.blocks[-1]
    state["encoder.output_projection.weight"] = last.out_proj.weight[:h, : arch[-1].width]
    state["encoder.output_projection.bias"] = last.out_proj.bias[:h]
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


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
    state = supernet_student_state(supernet, arch)
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
