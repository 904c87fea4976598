"""Shared fixtures: tiny spaces and tiny BERT teachers made in the test (no network)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertModel

from search_space import SearchSpace

# The test machine is shared and its timings noisy: timing commands warn instead of refusing (the tests of the
# refusal itself unset this; see nasbert/latency/machine.py).
os.environ.setdefault("NASBERT_ALLOW_BUSY", "1")

# Under pytest-xdist (`-n 2`, pyproject addopts) each worker gets one core: torch, and every subprocess a test
# starts, run one thread, so two workers never fight over two cores (2 x 2 threads slowed a step 10x here).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def uninterrupted_run(command: list[str]) -> None:
    """`command` (python -m nasbert ...) run in this process with one thread, as the tests' subprocesses run
    (OMP_NUM_THREADS=1: the same reductions, bitwise): the reference a resumed run must equal, without the
    seconds of imports a second interpreter costs."""
    from nasbert.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(command[3:]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def tiny_space() -> SearchSpace:
    return SearchSpace.tiny()


def tiny_bert_config(**overrides) -> BertConfig:
    values = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=64)
    values.update(overrides)
    return BertConfig(**values)


@pytest.fixture
def tiny_teacher() -> BertModel:
    torch.manual_seed(0)
    return BertModel(tiny_bert_config()).eval()


def padded_batch(vocab_size: int, lengths: list[int], seq_len: int, seed: int = 0):
    """input_ids (B, T) with pad id 0 after each length, and the matching attention mask."""
    rng = np.random.default_rng(seed)
    ids = torch.zeros(len(lengths), seq_len, dtype=torch.long)
    mask = torch.zeros(len(lengths), seq_len, dtype=torch.long)
    for i, length in enumerate(lengths):
        ids[i, :length] = torch.from_numpy(rng.integers(1, vocab_size, size=length))
        mask[i, :length] = 1
    return ids, mask


@pytest.fixture
def one_thread():
    """Tiny models train in a few seconds on one thread; on a busy 2-core machine two threads are far slower.
    Modules that train use it for every test: `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
