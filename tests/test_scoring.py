"""Prefix-shared batched scoring gives exactly each candidate's own dev loss."""

from __future__ import annotations

import numpy as np
import torch

from nasbert.common.losses import masked_mse
from nasbert.train_supernet.scoring import BlockScorer
from supernet import Supernet


def test_prefix_shared_scores_equal_one_by_one(tiny_space):
    torch.manual_seed(0)
    supernet = Supernet(tiny_space)
    states = [torch.randn(6, 10, tiny_space.hidden_size) for _ in range(tiny_space.num_blocks + 1)]
    scorer = BlockScorer(supernet, states)
    rng = np.random.default_rng(0)
    candidates = sorted({tiny_space.sample_block(rng) for _ in range(60)})
    for n in range(tiny_space.num_blocks):
        batched = scorer.score(n, candidates)
        with torch.no_grad():
            alone = [masked_mse(supernet.forward_block(n, states[n], c), states[n + 1], None).item()
                     for c in candidates]
        assert np.allclose(batched, alone, rtol=1e-5, atol=1e-7)
    assert scorer.scored == 2 * len(candidates) and scorer.candidates_per_second > 0
