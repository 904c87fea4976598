"""Initialise an exported student: from the supernet, from the teacher (ETD-Impt / ETD-Rand), or from scratch.

- supernet:  exact extraction (`Supernet.export_state`); with E = H the student computes the chained supernet
             blocks after the teacher's own embeddings.
- etd-impt / etd-rand: ETD from the teacher. Student layer j of block n (d real ops in the block, k teacher
             layers per block) maps to teacher layer n*k + floor(j*k/d) and starts from it by its family's rule in
             `etd.TEACHER_COPY`: an M takes that layer's attention (its most important w/head_dim heads), an F its
             feed-forward (its 4w most important neurons); every block keeps the teacher's first w hidden
             dimensions by importance, so consecutive blocks share leading dimensions and the projections start as
             selections. Ops without a rule (S) have no teacher counterpart and start at random.
- hybrid:    etd-impt, but the ops without a teacher counterpart (S) come from the supernet instead of random.
             The supernet was ETD-Impt initialised with the same order, so its width-w slices started on the same
             leading dims the ETD student keeps; the convolutions are what block-wise distillation trained there.
- teacher-layers: whole teacher layers, no pruning (DistilBERT-style depth pruning): pair p of a block's ops
             (M,F) copies teacher layer `teacher_layers` names for it (default: evenly spaced in the block's share
             of the teacher), in the teacher's own order of heads, neurons and dimensions. At the teacher's width
             (and FFN ratio) a student of M,F pairs computes exactly the kept teacher layers, one after another.
- scratch:   the Hugging Face initialisation, the baseline.

In every init but scratch, embeddings keep E of the teacher's hidden dimensions (all of them when E = H, in
the teacher's order; else the E most important) and, where the teacher has an MLM head, the student's head
starts from it (its transform reduced to the same E dimensions; the decoder is tied to the embeddings).
A teacher that factorises its embeddings (ELECTRA, ALBERT: E-wide, then a projection E -> H) gives the student
all E of them, and the student's first projection E -> w_1 is the teacher's projection followed by what the
init reads from the H-wide state (the supernet's first projection, or ETD's selection of dimensions).

Every student follows the teacher's conventions (`Teacher.student_conventions()`: position numbering, token
types, activation, layer-norm eps); a student extracted from the supernet keeps the supernet's GELU and eps in
its layers, so that it computes what the supernet computed, and the teacher's eps in its embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

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

SUPERNET_CONVENTIONS = {"hidden_act": "gelu", "layer_norm_eps": 1e-12}  # supernet/: F.gelu, Supernet's default eps


def embedding_dims(order: ImportanceOrder | None, hidden_size: int, embedding_size: int) -> torch.Tensor:
    """Which teacher hidden dimensions the student's embeddings keep."""
    if embedding_size == hidden_size:
        return torch.arange(hidden_size)
    if order is None:
        raise ValueError("a reduced embedding size needs an importance order")
    return order.hidden[:embedding_size]


def teacher_order(teacher: Teacher) -> ImportanceOrder:
    """The teacher's own order of dims, heads and neurons: `teacher-layers` keeps them as they are."""
    conventions = teacher.conventions
    layers = len(teacher.encoder_layers)
    return ImportanceOrder(hidden=torch.arange(conventions.hidden_size),
                           heads=[torch.arange(conventions.num_heads)] * layers,
                           neurons=[torch.arange(conventions.intermediate_size)] * layers)


def teacher_layer_map(arch: Arch, layers_per_block: int, teacher_layers: Sequence[int] | None = None
                      ) -> list[list[int]]:
    """Per block, the teacher layer each pair of its ops (M,F) copies under `teacher-layers`: the given layers in
    order, each within its block's share of the teacher (block n: layers n*k .. n*k+k-1), or evenly spaced there."""
    k = layers_per_block
    pairs = [(len(block.active_ops) + 1) // 2 for block in arch]
    if teacher_layers is None:
        return [[n * k + p * k // count for p in range(count)] for n, count in enumerate(pairs)]
    given = [int(t) for t in teacher_layers]
    if len(given) != sum(pairs):
        raise UserError(f"--teacher-layers names {len(given)} layers but the arch has {sum(pairs)} pairs of ops "
                        f"(M,F), one per kept teacher layer")
    layer_map, start = [], 0
    for n, count in enumerate(pairs):
        block = given[start: start + count]
        start += count
        if block != sorted(set(block)) or not all(n * k <= t < (n + 1) * k for t in block):
            raise UserError(f"--teacher-layers {given}: block {n + 1} of the arch keeps {count} of the teacher's "
                            f"layers {n * k}..{n * k + k - 1}, in increasing order, not {block}")
        layer_map.append(block)
    return layer_map


def student_conventions(init: str, teacher: Teacher) -> dict[str, object]:
    """The teacher's conventions for a student of `init`; the supernet's activation and eps in a supernet student's
    layers (its embeddings keep the teacher's eps)."""
    conventions = teacher.student_conventions()
    if init == "supernet":
        teacher_eps = conventions["layer_norm_eps"]
        conventions.update(SUPERNET_CONVENTIONS)
        if teacher_eps != conventions["layer_norm_eps"]:
            conventions["embedding_layer_norm_eps"] = teacher_eps
    return conventions


@torch.no_grad()
def build_inherited_student(init: str, space: SearchSpace, arch: Arch | str, teacher: Teacher, *,
                  supernet: Supernet | None = None, order: ImportanceOrder | None = None,
                  teacher_mlm_head: nn.Module | None = None, embedding_size: int | None = None,
                  teacher_layers: Sequence[int] | None = None, **config_overrides) -> NasbertForMaskedLM:
    """A NasbertForMaskedLM student of `arch` initialised by `init` (see the module docstring)."""
    if init not in INITS:
        raise UserError(f"--init must be one of {', '.join(INITS)}, not {init!r}")
    if teacher_layers is not None and init != "teacher-layers":
        raise UserError("--teacher-layers goes with --init teacher-layers")
    arch = space.validate(arch)
    layer_map = teacher_layer_map(arch, teacher.layers_per_block, teacher_layers) if init == "teacher-layers" else None
    if layer_map is not None and order is None:
        order = teacher_order(teacher)
    hidden = space.hidden_size
    parts = teacher.embedding_parts
    if parts.projection is not None:  # factorised: the student takes all E of the teacher's embeddings
        e = parts.word.weight.shape[1]
        if embedding_size not in (None, e):
            raise UserError(f"the teacher's embeddings are {e} wide and projected to {hidden}; --embedding-size "
                            f"must be {e} or left out")
    else:
        e = embedding_size or hidden
    if e > hidden:
        raise UserError(f"--embedding-size {e} is larger than the teacher's hidden size {hidden}")
    config = student_config(space, arch, student_conventions(init, teacher), embedding_size=e,
                            pad_token_id=teacher.tokenizer.pad_token_id, **config_overrides)
    model = NasbertForMaskedLM(config)
    if init == "scratch":
        return model
    if init in ("supernet", "hybrid") and supernet is None:
        raise UserError(f"--init {init} needs a trained supernet run")
    if (init.startswith("etd") or init == "hybrid") and order is None:
        raise ValueError("ETD init needs an importance (or random) order")
    dims = torch.arange(e) if parts.projection is not None else embedding_dims(order, hidden, e)
    state = supernet.export_state(arch) if init == "supernet" else _etd_state(space, arch, teacher, order, layer_map)
    if init == "hybrid":
        state.update(_untaught_layers(supernet.export_state(arch), arch))
    state.update(_embedding_state(parts, dims, space))
    state.update(_first_projection(state, init, arch, order, parts, dims))
    missing = set(state) - set(model.nasbert.state_dict())
    if missing:
        raise RuntimeError(f"inheritance produced names the student does not have: {sorted(missing)[:5]}")
    model.nasbert.load_state_dict(state, strict=False)
    if teacher_mlm_head is not None:
        _inherit_mlm_head(model, teacher.mlm_head_parts(teacher_mlm_head), dims)
    model.tie_weights()
    return model


def _first_projection(state: dict[str, torch.Tensor], init: str, arch: Arch, order: ImportanceOrder | None,
                      parts: TeacherEmbeddings, dims: torch.Tensor) -> dict[str, torch.Tensor]:
    """The student's first projection E -> w_1: what the init reads from the teacher's H-wide state entering layer 1
    (the supernet's first projection, or ETD's selection of the w_1 most important dims), composed with how that
    state is made from the kept embedding dims (the columns at `dims`, or the teacher's projection E -> H)."""
    key = "encoder.blocks.0.projection"
    if init == "supernet":
        weight, bias = state[f"{key}.weight"], state[f"{key}.bias"]  # (w_1, H), (w_1,)
    else:
        w1 = arch[0].width
        hidden = state["encoder.output_projection.weight"].shape[0]
        weight = (order.hidden[:w1, None] == torch.arange(hidden)[None, :]).to(state[f"{key}.weight"].dtype)
        bias = torch.zeros(w1)  # row r picks teacher dim order[r]
    if parts.projection is None:
        return {f"{key}.weight": weight[:, dims].clone(), f"{key}.bias": bias.clone()}
    projection = parts.projection  # y = W_p e + b_p: (H, E), (H,)
    return {f"{key}.weight": weight @ projection.weight, f"{key}.bias": weight @ projection.bias + bias}


def _embedding_state(parts: TeacherEmbeddings, dims: torch.Tensor, space: SearchSpace) -> dict[str, torch.Tensor]:
    """The student's embeddings (its names) from the teacher's, reduced to the kept dims. The position table is the
    teacher's whole table (the student numbers positions as the teacher does); a teacher without token types gives
    none where the space has none, zeros where it has some."""
    weights = {"word_embeddings.weight": parts.word.weight,
               "position_embeddings.weight": parts.position.weight[: space.max_position_embeddings],
               "LayerNorm.weight": parts.norm.weight, "LayerNorm.bias": parts.norm.bias}
    if space.type_vocab_size > 0:
        weights["token_type_embeddings.weight"] = (
            parts.token_type.weight if parts.token_type is not None
            else torch.zeros(space.type_vocab_size, parts.word.weight.shape[1]))
    return {f"embeddings.{key}": (value[..., dims] if value.ndim > 1 else value[dims]).clone()
            for key, value in weights.items()}


def _etd_state(space: SearchSpace, arch: Arch, teacher: Teacher, order: ImportanceOrder,
               layer_map: list[list[int]] | None = None) -> dict[str, torch.Tensor]:
    """Encoder weights (student names) from the teacher's layers, ordered by `order`; with `layer_map` (per block,
    the teacher layer of each pair of ops) whole layers, else ETD's mapping."""
    teacher_head_dim = matching_head_dim(space.head_dim, teacher)
    student = NasbertForMaskedLM(student_config(space, arch)).nasbert.encoder  # shapes to copy into
    k = teacher.layers_per_block
    for n, (block, block_arch) in enumerate(zip(student.blocks, arch)):
        w = block_arch.width
        dims = order.hidden[:w]
        ops = block_arch.active_ops
        for j, (layer, op) in enumerate(zip(block.layers, ops)):
            t = n * k + (j * k) // len(ops) if layer_map is None else layer_map[n][j // 2]
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


def _untaught_layers(supernet_state: dict[str, torch.Tensor], arch: Arch) -> dict[str, torch.Tensor]:
    """The supernet's weights (op and LayerNorm) of every layer whose op has no teacher counterpart (hybrid)."""
    prefixes = tuple(f"encoder.blocks.{n}.layers.{j}." for n, block in enumerate(arch)
                     for j, op in enumerate(block.active_ops) if teacher_copy(op) is None)
    return {key: value for key, value in supernet_state.items() if prefixes and key.startswith(prefixes)}


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
        elif (init.startswith("etd") or init in ("hybrid", "teacher-layers")) and order is not None:
            adapter.weight.zero_()
            adapter.weight[order.hidden[:w], torch.arange(w)] = 1.0
            adapter.bias.zero_()
    return adapters
