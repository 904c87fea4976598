"""How much each teacher layer matters, for `--depth-layers importance`: ShortGPT's block influence (Men et al.,
2024), 1 - cos(layer input, layer output) averaged over tokens. A layer that barely turns its input is the
cheapest to drop. Read from `output_hidden_states`, so it works for every teacher family (ALBERT's shared layer
too: one score per depth)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasbert.common.teacher import Teacher


@torch.no_grad()
def layer_influence(teacher: Teacher, batches: list[torch.Tensor]) -> list[float]:
    """Per teacher layer, the mean of 1 - cos(h_in, h_out) over the tokens of `batches` (each (B, T) input ids)."""
    model = teacher.model.eval()
    total, count = None, 0
    for input_ids in batches:
        states = model(input_ids=input_ids, output_hidden_states=True).hidden_states  # L + 1 of (B, T, H)
        turned = torch.stack([(1 - F.cosine_similarity(a, b, dim=-1)).mean() for a, b in zip(states, states[1:])])
        total = turned if total is None else total + turned
        count += 1
    return (total / count).tolist()
