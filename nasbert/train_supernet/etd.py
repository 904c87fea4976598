"""ETD (Extract Then Distill) initialisation: teacher weights ordered by importance into the supernet.

Every elastic op uses leading slices, so ordering the teacher's heads, FFN neurons and hidden dimensions
by importance puts the most important part into every width's slice (ETD-Impt); ETD-Rand uses a random
order instead. The importance scores follow DynaBERT (the same lab's code, see the literature notes):

- head h of layer l:    sum over batches of |dL/dm_h|, m_h a head-mask variable multiplying the head's output;
- FFN neuron i:         |sum_j W1_ij dL/dW1_ij + b1_i dL/db1_i| + |sum_j W2_ji dL/dW2_ji|   (first-order Taylor);
- hidden dimension d:   sum over every hidden state (embeddings and each layer's output) of |sum h_d dL/dh_d|,
                        the Taylor estimate of zeroing d in the residual stream; one order shared by all layers.

L needs no MLM head: 15 % of the input tokens are replaced by [MASK] and L is the MSE between the teacher's
last hidden state on that input and on the clean input (the clean one detached), i.e. how much each part
helps the teacher recover masked tokens' representations.

Mapping: super layer j of block n starts from teacher layer n*k + j//2 (k teacher layers per block): each op
whose family has a rule in `TEACHER_COPY` starts from that layer by the rule (M from its attention, F from
its feed-forward; S and I have no teacher counterpart and stay as initialised); in/out projections start as
the selections of the leading hidden dimensions (in_proj[r, order[r]] = 1, out_proj[order[r], r] = 1).
The same rules start an exported student's ops (`nasbert.export.inherit`). The teacher's parts are read
through its adaptor (`Teacher.layer`), never by module path.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nasbert.common.teacher import Teacher, TeacherLayer
from nasbert.errors import UserError
from search_space import get_op
from supernet import Supernet, norm_key


@dataclass
class ImportanceOrder:
    """Descending-importance orders: hidden dims (H,), and per teacher layer heads (nh,) and neurons (4H,)."""

    hidden: torch.Tensor
    heads: list[torch.Tensor]
    neurons: list[torch.Tensor]


def random_order(teacher: Teacher, seed: int = 0) -> ImportanceOrder:
    generator = torch.Generator().manual_seed(seed)
    conventions = teacher.conventions
    layers = len(teacher.encoder_layers)
    return ImportanceOrder(
        hidden=torch.randperm(conventions.hidden_size, generator=generator),
        heads=[torch.randperm(conventions.num_heads, generator=generator) for _ in range(layers)],
        neurons=[torch.randperm(conventions.intermediate_size, generator=generator) for _ in range(layers)],
    )


def importance_order(teacher: Teacher, batches: list[torch.Tensor], mask_token_id: int,
                     seed: int = 0) -> ImportanceOrder:
    """ETD-Impt orders from a few batches of input ids (B, T).

    A layer module applied at several depths (ALBERT's shared layer) gets a head mask per depth (its calls are
    counted); its FFN neurons get one score, the sum over its depths, in every depth's order."""
    model = teacher.model
    conventions = teacher.conventions
    num_heads, head_dim = conventions.num_heads, conventions.head_dim
    layers = [teacher.layer(t) for t in range(len(teacher.encoder_layers))]
    head_masks = [torch.ones(num_heads, requires_grad=True) for _ in layers]
    depths: dict[int, list[int]] = {}  # id of an attn_out module -> the depths that apply it, in order
    for t, layer in enumerate(layers):
        depths.setdefault(id(layer.attn_out), []).append(t)

    def mask_heads(module_depths: list[int]):
        calls = itertools.count()

        def hook(module, inputs):
            t = module_depths[next(calls) % len(module_depths)]  # each forward applies the module at each depth once
            context = inputs[0]  # (B, T, H): the heads' outputs, concatenated, entering attn_out
            shape = context.shape
            masked = (context.view(*shape[:-1], num_heads, head_dim) * head_masks[t][:, None]).view(shape)
            return (masked, *inputs[1:])
        return hook

    modules = {id(layer.attn_out): layer.attn_out for layer in layers}
    handles = [module.register_forward_pre_hook(mask_heads(depths[key])) for key, module in modules.items()]
    # The embeddings are frozen: make their output a leaf that wants a gradient, for the hidden-dim scores.
    handles.append(teacher.embeddings.register_forward_hook(lambda module, inputs, output: output.requires_grad_()))
    ffn_params = [p for layer in layers for p in (layer.ffn_in.weight, layer.ffn_in.bias, layer.ffn_out.weight)]
    was_training = model.training
    model.eval()
    for p in ffn_params:
        p.requires_grad_(True)
    head_scores = torch.zeros(len(layers), num_heads)
    neuron_scores = torch.zeros(len(layers), conventions.intermediate_size)
    hidden_scores = torch.zeros(conventions.hidden_size)
    generator = torch.Generator().manual_seed(seed)
    try:
        for input_ids in batches:
            with torch.no_grad():
                clean = model(input_ids=input_ids).last_hidden_state
            corrupt = input_ids.clone()
            chosen = torch.rand(input_ids.shape, generator=generator) < 0.15
            corrupt[chosen] = mask_token_id
            out = model(input_ids=corrupt, output_hidden_states=True)
            loss = (out.last_hidden_state - clean).pow(2).mean()
            grads = torch.autograd.grad(loss, head_masks + ffn_params + list(out.hidden_states))
            head_grads = grads[: len(layers)]
            param_grads = grads[len(layers): len(layers) + len(ffn_params)]
            state_grads = grads[len(layers) + len(ffn_params):]
            for i, g in enumerate(head_grads):
                head_scores[i] += g.abs()
            for i, layer in enumerate(layers):
                w1, b1, w2 = layer.ffn_in.weight, layer.ffn_in.bias, layer.ffn_out.weight
                g1, gb1, g2 = param_grads[3 * i: 3 * i + 3]
                neuron_scores[i] += ((w1 * g1).sum(1) + b1 * gb1).abs().detach() + (w2 * g2).sum(0).abs().detach()
            for h, g in zip(out.hidden_states, state_grads):
                hidden_scores += (h * g).sum(dim=(0, 1)).abs().detach()
    finally:
        for handle in handles:
            handle.remove()
        for p in ffn_params:
            p.requires_grad_(False)
        model.train(was_training)
    descending = dict(descending=True, stable=True)
    return ImportanceOrder(hidden=hidden_scores.argsort(**descending),
                           heads=[s.argsort(**descending) for s in head_scores],
                           neurons=[s.argsort(**descending) for s in neuron_scores])


def head_rows(head_order: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Row indices of q/k/v outputs (and o inputs) with heads in the given order."""
    return (head_order[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)


def matching_head_dim(space_head_dim: int, teacher: Teacher) -> int:
    """The teacher's head size, which ETD needs the space to share (heads are copied whole)."""
    teacher_head_dim = teacher.conventions.head_dim
    if space_head_dim != teacher_head_dim:
        raise UserError(f"ETD needs the space's head dim to equal the teacher's ({teacher_head_dim}), "
                        f"not {space_head_dim}")
    return teacher_head_dim


@dataclass(frozen=True)
class Selection:
    """Which parts of one teacher layer an op keeps, most important first."""

    dims: torch.Tensor  # hidden dimensions (w,): the op's inputs and outputs
    head_rows: torch.Tensor  # q/k/v output rows of the kept heads (w,)
    neurons: torch.Tensor  # FFN neurons (up to ffn_ratio * w,)


@dataclass(frozen=True)
class TeacherCopy:
    """How ETD starts an op from a teacher layer: `copy(op_module, layer, selection)` writes the op's leading
    slices (an elastic op's or a student op's: both have the student's names); its post-LN starts from the
    teacher's LayerNorm named `norm` (a TeacherLayer field)."""

    copy: Callable[[nn.Module, TeacherLayer, Selection], None]
    norm: str


def _copy_attention(op: nn.Module, layer: TeacherLayer, s: Selection) -> None:
    for name in ("query", "key", "value"):
        copy_linear(getattr(op, name), getattr(layer, name), s.head_rows, s.dims)
    copy_linear(op.output, layer.attn_out, s.dims, s.head_rows)


def _copy_feed_forward(op: nn.Module, layer: TeacherLayer, s: Selection) -> None:
    copy_linear(op.intermediate, layer.ffn_in, s.neurons, s.dims)
    copy_linear(op.output, layer.ffn_out, s.dims, s.neurons)


# Op family -> how it starts from the teacher; families without an entry (S, I) have no teacher counterpart.
TEACHER_COPY: dict[str, TeacherCopy] = {"M": TeacherCopy(_copy_attention, "attn_norm"),
                                        "F": TeacherCopy(_copy_feed_forward, "ffn_norm")}


def teacher_copy(op: str) -> TeacherCopy | None:
    """The teacher-copy rule of op `op` (by its family), or None."""
    return TEACHER_COPY.get(get_op(op).family)


@torch.no_grad()
def init_supernet_from_teacher(supernet: Supernet, teacher: Teacher, order: ImportanceOrder) -> None:
    """Copy the teacher's layer weights (ordered) into every op with a teacher-copy rule, see module doc."""
    space = supernet.space
    conventions = teacher.conventions
    hidden = conventions.hidden_size
    teacher_head_dim = matching_head_dim(space.head_dim, teacher)
    w = min(space.max_width, hidden)  # dims beyond the teacher's stay as initialised
    inner = min(space.ffn_ratio * space.max_width, conventions.intermediate_size)
    hidden_idx = order.hidden[:w]
    for n, block in enumerate(supernet.blocks):
        block.in_proj.weight.zero_()
        block.in_proj.bias.zero_()
        block.in_proj.weight[torch.arange(w), hidden_idx] = 1.0
        block.out_proj.weight.zero_()
        block.out_proj.bias.zero_()
        block.out_proj.weight[hidden_idx, torch.arange(w)] = 1.0
        for j, layer in enumerate(block.layers):
            t = n * teacher.layers_per_block + j // 2
            source = teacher.layer(t)
            selection = Selection(hidden_idx, head_rows(order.heads[t], teacher_head_dim)[:w], order.neurons[t][:inner])
            for op, module in layer.ops.items():
                rule = teacher_copy(op)
                if rule is None:
                    continue
                rule.copy(module, source, selection)
                norm = getattr(source, rule.norm)
                for width in space.widths:
                    copy_norm(layer.norms[norm_key(op, width)], norm, order.hidden[:width])


def copy_linear(target, source: nn.Linear, rows: torch.Tensor, cols: torch.Tensor) -> None:
    """target.weight[:len(rows), :len(cols)] = source.weight[rows][:, cols]; bias likewise."""
    target.weight[: len(rows), : len(cols)] = source.weight[rows][:, cols]
    target.bias[: len(rows)] = source.bias[rows]


def copy_norm(target: nn.LayerNorm, source: nn.LayerNorm, dims: torch.Tensor) -> None:
    """target's leading len(dims) entries = source's at `dims` (all of a norm as wide as dims)."""
    target.weight[: len(dims)] = source.weight[dims]
    target.bias[: len(dims)] = source.bias[dims]
