"""The space: enumeration, sampling, and exact parameter counts of the built student."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from nasbert.student import build_student
from search_space import Arch, SearchSpace


def test_default_space_has_97650_block_candidates():
    space = SearchSpace()
    candidates = list(space.block_candidates())
    assert len(candidates) == 97_650 == space.num_block_candidates()
    assert len(set(candidates)) == len(candidates)
    for block in candidates[:: 997]:
        space.validate_block(block)


def test_tiny_space_count_matches_the_formula(tiny_space):
    # widths x (ops + ops^2 + ... + ops^L), ops = M, F, S3, S5
    assert tiny_space.num_block_candidates() == 2 * (4 + 16 + 64 + 256)
    assert len(list(tiny_space.block_candidates())) == tiny_space.num_block_candidates()


def test_sampling_is_seeded_and_stays_in_the_space():
    space = SearchSpace()
    assert [str(space.sample(7)) for _ in range(3)] == [str(space.sample(7))] * 3
    rng = np.random.default_rng(1)
    for _ in range(200):
        space.validate(space.sample(rng))


def test_block_sampling_is_uniform_over_candidates(tiny_space):
    rng = np.random.default_rng(0)
    counts = Counter(tiny_space.sample_block(rng) for _ in range(68_000))
    n = tiny_space.num_block_candidates()  # 680, so about 100 draws each
    assert len(counts) == n
    values = np.array(list(counts.values()))
    assert abs(values.mean() - 100) < 1e-9 and values.std() < 15  # binomial sd is ~10


def test_space_numbers_are_configurable():
    space = SearchSpace(num_blocks=3, layers_per_block=2, widths=(64, 128), head_dim=32, kernels=(3,),
                        hidden_size=256, vocab_size=1000)
    assert space.ops == ("M", "F", "S3")
    assert space.num_block_candidates() == 2 * (3 + 9)
    with pytest.raises(ValueError, match="head dim"):
        SearchSpace(widths=(100,))
    with pytest.raises(ValueError, match="odd"):
        SearchSpace(kernels=(4,))


@pytest.mark.parametrize("space", [SearchSpace(), SearchSpace.tiny()], ids=["default", "tiny"])
def test_spec_params_equal_built_student_for_50_random_archs(space):
    rng = np.random.default_rng(3)
    with torch.device("meta"):  # shapes only: counts without allocating 50 models
        for _ in range(50):
            arch = space.sample(rng)
            model = build_student(space, arch)
            assert sum(p.numel() for p in model.parameters()) == space.params(arch, pooler=True)
            assert sum(p.numel() for p in model.encoder.parameters()) + sum(
                p.numel() for p in model.embeddings.parameters()) == space.params(arch)


def test_flops_formula_on_a_bert_like_arch():
    space = SearchSpace(num_blocks=1, layers_per_block=2, widths=(768,), hidden_size=768, embedding_size=768)
    arch = Arch.parse("768:M,F")
    t, h = 128, 768
    layer = 2 * t * (4 * h * h + 8 * h * h) + 4 * t * t * h  # one BERT-base layer
    projections = 2 * 2 * t * h * h  # embedding -> block, block -> output
    assert space.flops(arch) == layer + projections


def test_space_json_round_trip():
    space = SearchSpace.tiny(kernels=(3, 5, 7))
    assert SearchSpace.from_json(space.to_json()) == space
