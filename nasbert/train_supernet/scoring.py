"""Score block candidates by their dev distillation loss: the hot loop of shrinking and of the block table.

The teacher's dev states at block boundaries are computed once and cached. Candidates of a block are
scored together: grouped by width, then walked as a prefix tree of their ops, so a prefix shared by many
candidates (e.g. every candidate that starts with `M,F`) is computed once. This is exact: a candidate's
loss is the same as running it alone. All dev sequences go through each tree node in one batch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from nasbert.common.losses import masked_mse
from nasbert.common.teacher import Teacher
from search_space import BlockArch
from supernet import Supernet, padding_masks


class BlockScorer:
    """Dev block losses of candidate blocks, from cached teacher states (S sequences, T tokens, H)."""

    def __init__(self, supernet: Supernet, states: list[torch.Tensor], attention_mask: torch.Tensor | None = None):
        self.supernet = supernet
        self.states = states  # N+1 tensors (S, T, H): Y_0 .. Y_N
        self.attention_mask = attention_mask
        self.scored = 0
        self.seconds = 0.0

    @classmethod
    @torch.no_grad()
    def from_teacher(cls, supernet: Supernet, teacher: Teacher, input_ids: torch.Tensor,
                     batch_size: int = 32) -> BlockScorer:
        """Run the teacher once over the dev ids (S, T) and keep its block-boundary states."""
        chunks = [teacher.block_states(ids) for ids in input_ids.split(batch_size)]
        states = [torch.cat([chunk[i] for chunk in chunks]).float() for i in range(len(chunks[0]))]
        return cls(supernet, states)

    @property
    def candidates_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds else 0.0

    @torch.inference_mode()
    def score(self, n: int, candidates: Sequence[BlockArch]) -> np.ndarray:
        """Dev MSE of block n (0-based) for each candidate, in the candidates' order."""
        start = time.perf_counter()
        was_training = self.supernet.training
        self.supernet.eval()
        block = self.supernet.blocks[n]
        inputs, target = self.states[n], self.states[n + 1]
        mask = self.attention_mask
        attn_mask, pad_mask = padding_masks(mask, inputs.dtype)
        losses = np.empty(len(candidates))
        by_width: dict[int, list[tuple[tuple[str, ...], int]]] = defaultdict(list)
        for i, candidate in enumerate(candidates):
            by_width[candidate.width].append((candidate.active_ops, i))

        def visit(x: torch.Tensor, depth: int, items: list[tuple[tuple[str, ...], int]]) -> None:
            finished = [i for ops, i in items if len(ops) == depth]
            if finished:
                loss = masked_mse(block.out_proj(x, self.supernet.space.hidden_size), target, mask).item()
                losses[finished] = loss
            children: dict[str, list] = defaultdict(list)
            for ops, i in items:
                if len(ops) > depth:
                    children[ops[depth]].append((ops, i))
            for op, sub in children.items():
                visit(block.layers[depth](x, op, attn_mask, pad_mask), depth + 1, sub)

        for width, items in by_width.items():
            visit(block.in_proj(inputs, width), 0, items)  # (S, T, w)
        self.supernet.train(was_training)
        self.scored += len(candidates)
        self.seconds += time.perf_counter() - start
        return losses
