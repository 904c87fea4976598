"""Initialise an exported student: from the supernet, from the teacher (ETD-Impt / ETD-Rand), or from scratch.

- supernet:  exact extraction (`Supernet.export_state`); with E = H the student computes the chained supernet
             blocks after the teacher's own embeddings.
- etd-impt / etd-rand: ETD from the teacher. Student layer j of block n (d real ops in the block, k teacher
             layers per block) maps to teacher layer n*k + floor(j*k/d) and starts from it by its family's rule in
             `etd.TEACHER_COPY`: an M takes that layer's attention (its most important w/head_dim heads), an F its
             feed-forward (its 4w most important neurons); every block keeps the teacher's first w hidden
             dimensions by importance, so consecutive blocks share leading dimensions and the projections start as
             selections. Ops without a rule (S) have no teacher counterpart and start at random.
- scratch:   the Hugging Face initialisation, the baseline.

In every init but scratch, embeddings keep E of the teacher's hidden dimensions (all of them when E = H, in
the teacher's order; else the E most important) and, where the teacher has an MLM head, the student's head
starts from it (its transform reduced to the same E dimensions; the decoder is tied to the embeddings).
"""

from __future__ import annotations

import torch
from torch import nn

from nasbert.common.teacher import Teacher, TeacherEmbeddings, TeacherMLMHead
from nasbert.errors import UserError
from nasbert.export.config import INITS
from nasbert.modeling_nasbert import NasbertForMaskedLM
from nasbert.student import student_config
from nasbert.train_supernet.etd import (
    ImportanceOrder,
    Selection,
    copy_norm,
    head_rows,
    matching_head_dim,
    teacher_copy,
)
from search_space import Arch, SearchSpace
from supernet import Supernet


def embedding_dims(order: ImportanceOrder | None, hidden_size: int, embedding_size: int) -> torch.Tensor:
    """Which teacher hidden dimensions the student's embeddings keep."""
    if embedding_size == hidden_size:
        return torch.arange(hidden_size)
    if order is None:
        raise ValueError("a reduced embedding size needs an importance order")
    return order.hidden[:embedding_size]


@torch.no_grad()
def build_inherited_student(init: str, space: SearchSpace, arch: Arch | str, teacher: Teacher, *,
                  supernet: Supernet | None = None, order: ImportanceOrder | None = None,
                  teacher_mlm_head: nn.Module | None = None, embedding_size: int | None = None,
                  **config_overrides) -> NasbertForMaskedLM:
    """A NasbertForMaskedLM student of `arch` initialised by `init` (see the module docstring)."""
    if init not in INITS:
        raise UserError(f"--init must be one of {', '.join(INITS)}, not {init!r}")
    arch = space.validate(arch)
    hidden = space.hidden_size
    e = embedding_size or hidden
    if e > hidden:
        raise UserError(f"--embedding-size {e} is larger than the teacher's hidden size {hidden}")
    config = student_config(space, arch, embedding_size=e, pad_token_id=teacher.tokenizer.pad_token_id,
                            **config_overrides)
    model = NasbertForMaskedLM(config)
    if init == "scratch":
        return model
    if init == "supernet" and supernet is None:
        raise UserError("--init supernet needs a trained supernet run")
    if init.startswith("etd") and order is None:
        raise ValueError("ETD init needs an importance (or random) order")
    dims = embedding_dims(order, hidden, e)
    state = supernet.export_state(arch) if init == "supernet" else _etd_state(space, arch, teacher, order)
    state.update(_embedding_state(teacher.embedding_parts, dims, space))
    # The first projection reads the kept dims only: columns of the H-wide projection at those dims.
    if init == "supernet":
        state["encoder.blocks.0.projection.weight"] = state["encoder.blocks.0.projection.weight"][:, dims].clone()
    else:
        w1 = arch[0].width
        selection = (order.hidden[:w1, None] == dims[None, :]).to(state["encoder.output_projection.weight"].dtype)
        state["encoder.blocks.0.projection.weight"] = selection  # (w1, E): row r picks teacher dim order[r]
        state["encoder.blocks.0.projection.bias"] = torch.zeros(w1)
    missing = set(state) - set(model.nasbert.state_dict())
    if missing:
        raise RuntimeError(f"inheritance produced names the student does not have: {sorted(missing)[:5]}")
    model.nasbert.load_state_dict(state, strict=False)
    if teacher_mlm_head is not None:
        _inherit_mlm_head(model, teacher.mlm_head_parts(teacher_mlm_head), dims)
    model.tie_weights()
    return model


def _embedding_state(parts: TeacherEmbeddings, dims: torch.Tensor, space: SearchSpace) -> dict[str, torch.Tensor]:
    """The student's embeddings (its names) from the teacher's, reduced to the kept dims; positions from the
    teacher's row of position 0 on; a teacher without token types gives zero token-type embeddings."""
    offset = parts.position_offset
    token_type = (parts.token_type.weight if parts.token_type is not None
                  else torch.zeros(space.type_vocab_size, parts.word.weight.shape[1]))
    weights = {"word_embeddings.weight": parts.word.weight,
               "position_embeddings.weight": parts.position.weight[offset: offset + space.max_position_embeddings],
               "token_type_embeddings.weight": token_type,
               "LayerNorm.weight": parts.norm.weight, "LayerNorm.bias": parts.norm.bias}
    return {f"embeddings.{key}": (value[..., dims] if value.ndim > 1 else value[dims]).clone()
            for key, value in weights.items()}


def _etd_state(space: SearchSpace, arch: Arch, teacher: Teacher, order: ImportanceOrder) -> dict[str, torch.Tensor]:
    """Encoder weights (student names) from the teacher's layers, ordered by `order`."""
    teacher_head_dim = matching_head_dim(space.head_dim, teacher)
    student = NasbertForMaskedLM(student_config(space, arch)).nasbert.encoder  # shapes to copy into
    k = teacher.layers_per_block
    for n, (block, block_arch) in enumerate(zip(student.blocks, arch)):
        w = block_arch.width
        dims = order.hidden[:w]
        ops = block_arch.active_ops
        for j, (layer, op) in enumerate(zip(block.layers, ops)):
            t = n * k + (j * k) // len(ops)
            rule = teacher_copy(op)
            if rule is None:
                continue  # no teacher counterpart: stays at random
            source = teacher.layer(t)
            selection = Selection(dims, head_rows(order.heads[t], teacher_head_dim)[:w],
                                  order.neurons[t][: space.ffn_ratio * w])
            rule.copy(layer.op, source, selection)
            copy_norm(layer.LayerNorm, getattr(source, rule.norm), dims)
        if n > 0:  # block n-1 holds dims order[:w_prev], block n order[:w]: shared leading dims
            block.projection.weight.copy_(torch.eye(w, arch[n - 1].width))
            block.projection.bias.zero_()
    last = arch[-1].width
    student.output_projection.weight.zero_()
    student.output_projection.weight[order.hidden[:last], torch.arange(last)] = 1.0  # back to teacher order
    student.output_projection.bias.zero_()
    return {f"encoder.{k}": v.clone() for k, v in student.state_dict().items()}


def _inherit_mlm_head(model: NasbertForMaskedLM, head: TeacherMLMHead | None, dims: torch.Tensor) -> None:
    """From the teacher's MLM head: transform rows and LayerNorm at the kept dims, decoder bias as is."""
    if head is None:
        return
    model.cls.dense.weight.copy_(head.dense.weight[dims])
    model.cls.dense.bias.copy_(head.dense.bias[dims])
    copy_norm(model.cls.LayerNorm, head.norm, dims)
    model.cls.decoder.bias.copy_(head.decoder_bias)


@torch.no_grad()
def initial_adapters(init: str, space: SearchSpace, arch: Arch, supernet: Supernet | None = None,
                     order: ImportanceOrder | None = None) -> nn.ModuleList:
    """Adapters w_n -> H for blocks 1..N-1 (the hidden-state loss; dropped at export), started to match the init:
    the supernet's output projections, the ETD dimension selection, or at random."""
    adapters = nn.ModuleList(nn.Linear(block.width, space.hidden_size) for block in list(arch)[:-1])
    for n, (adapter, block) in enumerate(zip(adapters, arch)):
        w = block.width
        if init == "supernet" and supernet is not None:
            adapter.weight.copy_(supernet.blocks[n].out_proj.weight[:, :w])
            adapter.bias.copy_(supernet.blocks[n].out_proj.bias)
        elif init.startswith("etd") and order is not None:
            adapter.weight.zero_()
            adapter.weight[order.hidden[:w], torch.arange(w)] = 1.0
            adapter.bias.zero_()
    return adapters
