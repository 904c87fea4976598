"""The weight-sharing supernet: one super block per student block, trained block by block.

Super block n maps the teacher's hidden states (B, T, H) to (B, T, H):

    in_proj[:w, :H] -> (B, T, w) -> layers, each LayerNorm_{op,w}(x + op_w(x)) -> out_proj[:H, :w] -> (B, T, H)

Per layer position there is one elastic module per op; LayerNorms are kept per (op, width).
The active-path API follows once-for-all: `set_active_arch`, `sample_active_arch`, `get_active_arch`, and
`export_state(arch)` (OFA's `get_active_subnet`) copies a student's weights out under the student's names.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from search_space import Arch, BlockArch, SearchSpace
from supernet.elastic import ElasticLinear, elastic_op


# Duplicated by design (the student file stands alone); tests/test_ops.py checks that both agree.
# Copied from nasbert.modeling_nasbert.padding_masks
def padding_masks(attention_mask: torch.Tensor | None, dtype: torch.dtype):
    """(mask for attention (B, 1, 1, T) bool, mask for convolutions (B, T, 1)); both None without padding."""
    if attention_mask is None or bool(attention_mask.all()):
        return None, None
    keep = attention_mask.bool()
    return keep[:, None, None, :], keep[:, :, None].to(dtype)


class SuperLayer(nn.Module):
    """One layer position: every op of the space at its largest width, and a LayerNorm per (op, width)."""

    def __init__(self, space: SearchSpace, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.ops = nn.ModuleDict({op: elastic_op(space, op) for op in space.ops})
        self.norms = nn.ModuleDict({
            norm_key(op, w): nn.LayerNorm(w, eps=layer_norm_eps) for op in space.ops for w in space.widths
        })

    def forward(self, x: torch.Tensor, op: str, attn_mask, pad_mask) -> torch.Tensor:
        width = x.shape[-1]
        return self.norms[norm_key(op, width)](x + self.ops[op](x, attn_mask, pad_mask))


def norm_key(op: str, width: int) -> str:
    """The key of op `op`'s LayerNorm at `width` in `SuperLayer.norms`."""
    return f"{op}_{width}"


class SuperBlock(nn.Module):
    """Projections between the teacher's hidden size and the block's width, and the layer positions."""

    def __init__(self, space: SearchSpace, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.in_proj = ElasticLinear(space.hidden_size, space.max_width)
        self.out_proj = ElasticLinear(space.max_width, space.hidden_size)
        self.layers = nn.ModuleList(SuperLayer(space, layer_norm_eps) for _ in range(space.layers_per_block))
        self.hidden_size = space.hidden_size

    def forward(self, hidden: torch.Tensor, block: BlockArch, attn_mask, pad_mask) -> torch.Tensor:
        x = self.in_proj(hidden, block.width)  # (B, T, w)
        for layer, op in zip(self.layers, block.active_ops):
            x = layer(x, op, attn_mask, pad_mask)
        return self.out_proj(x, self.hidden_size)  # (B, T, H)


class Supernet(nn.Module):
    """All super blocks of a space. Block n reads the teacher's block n-1 output and predicts block n's."""

    def __init__(self, space: SearchSpace, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.space = space
        self.blocks = nn.ModuleList(SuperBlock(space, layer_norm_eps) for _ in range(space.num_blocks))
        self._active: Arch | None = None

    # ---- active path (once-for-all vocabulary) -------------------------------------------------------

    def set_active_arch(self, arch: Arch | str) -> Arch:
        self._active = self.space.validate(arch)
        return self._active

    def sample_active_arch(self, rng: np.random.Generator | int | None = None) -> Arch:
        return self.set_active_arch(self.space.sample(rng))

    def get_active_arch(self) -> Arch:
        if self._active is None:
            raise RuntimeError("no active arch: call set_active_arch or sample_active_arch first")
        return self._active

    # ---- forward ----------------------------------------------------------------------------------------

    def forward_block(self, n: int, hidden: torch.Tensor, block_arch: BlockArch | None = None,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Block n (0-based) on hidden (B, T, H) with attention_mask (B, T) of 1 = token, 0 = pad."""
        block_arch = block_arch or self.get_active_arch()[n]
        attn_mask, pad_mask = padding_masks(attention_mask, hidden.dtype)
        return self.blocks[n](hidden, block_arch, attn_mask, pad_mask)

    def forward_chain(self, hidden: torch.Tensor, arch: Arch | None = None,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The blocks chained on their own outputs: what the extracted student computes after its embeddings."""
        arch = arch or self.get_active_arch()
        attn_mask, pad_mask = padding_masks(attention_mask, hidden.dtype)
        for block, block_arch in zip(self.blocks, arch):
            hidden = block(hidden, block_arch, attn_mask, pad_mask)
        return hidden

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_chain(hidden, None, attention_mask)

    def block_parameters(self, n: int) -> list[nn.Parameter]:
        return list(self.blocks[n].parameters())

    # ---- extraction -------------------------------------------------------------------------------------

    @torch.no_grad()
    def export_state(self, arch: Arch | str) -> dict[str, torch.Tensor]:
        """The encoder weights of `arch` as the student names them (`encoder.*`), copied out.

        Consecutive blocks meet through one fused projection: in_{n+1}(out_n(x)) = W x + b with
        W = W_in W_out (w_{n+1} x w_n) and b = W_in b_out + b_in.
        """
        arch = self.space.validate(arch)
        state: dict[str, torch.Tensor] = {}
        h = self.space.hidden_size
        for n, (block, block_arch) in enumerate(zip(self.blocks, arch)):
            w = block_arch.width
            w_in, b_in = block.in_proj.weight[:w, :h], block.in_proj.bias[:w]
            if n > 0:
                previous = self.blocks[n - 1]
                w_prev = arch[n - 1].width
                w_out, b_out = previous.out_proj.weight[:h, :w_prev], previous.out_proj.bias[:h]
                w_in, b_in = w_in @ w_out, w_in @ b_out + b_in
            prefix = f"encoder.blocks.{n}"
            state[f"{prefix}.projection.weight"], state[f"{prefix}.projection.bias"] = w_in, b_in
            for j, op in enumerate(block_arch.active_ops):
                layer = block.layers[j]
                for key, value in layer.ops[op].export(w).items():
                    state[f"{prefix}.layers.{j}.op.{key}"] = value
                norm = layer.norms[norm_key(op, w)]
                state[f"{prefix}.layers.{j}.LayerNorm.weight"] = norm.weight
                state[f"{prefix}.layers.{j}.LayerNorm.bias"] = norm.bias
        last = self.blocks[-1]
        state["encoder.output_projection.weight"] = last.out_proj.weight[:h, : arch[-1].width]
        state["encoder.output_projection.bias"] = last.out_proj.bias[:h]
        return {k: v.detach().clone().contiguous() for k, v in state.items()}
