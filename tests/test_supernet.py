"""The supernet: shared leading slices, padding, the active path, and exact extraction of students."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import padded_batch
from transformers import BertConfig, BertModel

from nasbert.student import extract_student
from search_space import Arch, SearchSpace
from supernet import ElasticLinear, Supernet


def _chain_vs_student(space: SearchSpace, supernet: Supernet, teacher: BertModel, arch: Arch, seq_len: int):
    student = extract_student(supernet, arch, teacher.embeddings).eval()
    ids, mask = padded_batch(space.vocab_size, [seq_len, seq_len - 5, 3], seq_len, seed=len(str(arch)))
    with torch.no_grad():
        chain = supernet.forward_chain(teacher.embeddings(input_ids=ids), arch, mask)
        out = student(ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    return (chain - out)[real].abs().max().item()


def test_extraction_is_exact_on_20_tiny_archs(tiny_space, tiny_teacher):
    torch.manual_seed(0)
    supernet = Supernet(tiny_space).eval()
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert _chain_vs_student(tiny_space, supernet, tiny_teacher, tiny_space.sample(rng), 16) <= 1e-5


def test_extraction_is_exact_on_3_default_archs():
    torch.manual_seed(0)
    space = SearchSpace()
    supernet = Supernet(space).eval()
    teacher = BertModel(BertConfig(num_hidden_layers=1, intermediate_size=64)).eval()
    rng = np.random.default_rng(1)
    for _ in range(3):
        assert _chain_vs_student(space, supernet, teacher, space.sample(rng), 64) <= 1e-5


@pytest.mark.parametrize("arch", ["32:S5,S3,S5,S3/16:M,F,S5,M", "16:M,F,I,I/32:S3,M,S5,F"])
def test_padding_changes_no_real_token(tiny_space, tiny_teacher, arch):
    torch.manual_seed(0)
    supernet = Supernet(tiny_space).eval()
    student = extract_student(supernet, arch, tiny_teacher.embeddings).eval()
    ids, mask = padded_batch(tiny_space.vocab_size, [16, 9], 16)
    ids[1, 9:] = torch.arange(1, 8)  # junk in the padded slots: it must not matter
    with torch.no_grad():
        hidden = tiny_teacher.embeddings(input_ids=ids)
        padded = supernet.forward_chain(hidden, Arch.parse(arch), mask)[1, :9]
        alone = supernet.forward_chain(hidden[1:, :9], Arch.parse(arch))[0]
        student_padded = student(ids, attention_mask=mask).last_hidden_state[1, :9]
        student_alone = student(ids[1:, :9]).last_hidden_state[0]
    assert (padded - alone).abs().max() <= 1e-5
    assert (student_padded - student_alone).abs().max() <= 1e-5


def test_widths_share_leading_slices():
    layer = ElasticLinear(8, 8)
    x = torch.randn(2, 3, 4)
    before = layer(x, 4)
    with torch.no_grad():
        layer.weight[4:, :] += 1.0
        layer.weight[:, 4:] += 1.0
        layer.bias[4:] += 1.0
    assert torch.equal(layer(x, 4), before)
    with torch.no_grad():
        layer.weight[0, 0] += 1.0
    assert not torch.equal(layer(x, 4), before)


def test_every_width_trains_the_shared_weights(tiny_space):
    supernet = Supernet(tiny_space)
    hidden = torch.randn(2, 8, tiny_space.hidden_size)
    supernet.forward_block(0, hidden, Arch.parse("16:M,F,S3,I/32:M,I,I,I")[0]).pow(2).sum().backward()
    mha = supernet.blocks[0].layers[0].ops["M"]
    assert mha.query.weight.grad[:16, :16].abs().sum() > 0
    assert mha.query.weight.grad[16:].abs().sum() == 0
    assert supernet.blocks[0].layers[3].ops["M"].query.weight.grad is None  # identity layer: untouched


def test_active_path_api(tiny_space):
    supernet = Supernet(tiny_space)
    with pytest.raises(RuntimeError, match="no active arch"):
        supernet.get_active_arch()
    arch = supernet.sample_active_arch(5)
    assert supernet.get_active_arch() == arch == tiny_space.sample(5)
    assert supernet.set_active_arch("16:M,I,I,I/32:F,F,I,I") == Arch.parse("16:M,I,I,I/32:F,F,I,I")
    hidden = torch.randn(2, 8, tiny_space.hidden_size)
    assert supernet(hidden).shape == hidden.shape
    assert supernet.forward_block(1, hidden).shape == hidden.shape
