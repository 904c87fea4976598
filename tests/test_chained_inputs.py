"""--chained-inputs: blocks fed the student's own upstream output, each still learning only from its own loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasbert.common.losses import masked_mse
from nasbert.errors import UserError
from nasbert.train_supernet.config import TrainConfig
from nasbert.train_supernet.recipe import BlockwiseDistiller, chained_for_step
from supernet import Supernet


def test_chained_blocks_take_the_previous_student_block_and_send_no_gradient_upstream(tiny_space):
    torch.manual_seed(0)
    supernet = Supernet(tiny_space)
    states = [torch.randn(3, 8, tiny_space.hidden_size) for _ in range(tiny_space.num_blocks + 1)]
    arch = tiny_space.sample(np.random.default_rng(0))
    distiller = BlockwiseDistiller(supernet)

    teacher_fed = distiller(states, arch, None)
    chained = distiller(states, arch, None, chained=True)
    with torch.no_grad():
        hidden, expected = states[0], []
        for n, block in enumerate(arch):
            hidden = supernet.forward_block(n, hidden, block)
            expected.append(masked_mse(hidden, states[n + 1], None).item())
        alone = [masked_mse(supernet.forward_block(n, states[n], b), states[n + 1], None).item()
                 for n, b in enumerate(arch)]
    assert np.allclose(chained.tolist(), expected, rtol=1e-5)
    assert np.allclose(teacher_fed.tolist(), alone, rtol=1e-5)
    assert chained[0].item() == pytest.approx(teacher_fed[0].item())  # block 1 always gets Y_0
    assert not np.allclose(chained[1:].tolist(), teacher_fed[1:].tolist())

    chained[1].backward()  # block 2's loss: its input was detached, so block 1 gets no gradient
    assert all(p.grad is None or not p.grad.any() for p in supernet.blocks[0].parameters())
    assert any(p.grad is not None and p.grad.any() for p in supernet.blocks[1].parameters())


def test_chained_steps_are_the_given_share_and_the_same_on_every_call():
    assert not any(chained_for_step(0.0, 0, s) for s in range(200))
    assert all(chained_for_step(1.0, 0, s) for s in range(200))
    half = [chained_for_step(0.5, 3, s) for s in range(2000)]
    assert 0.45 < np.mean(half) < 0.55
    assert half == [chained_for_step(0.5, 3, s) for s in range(2000)]


def test_a_share_outside_0_1_is_refused():
    with pytest.raises(UserError, match="between 0 and 1"):
        TrainConfig(teacher="t", train_files=["x.txt"], output="o", chained_inputs=1.5)
