"""Progressive shrinking: bins by size, keeps m per bin, drops the worse half, resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_assets import make_corpus, make_tiny_teacher

from nasbert.train_supernet.config import TrainConfig
from nasbert.train_supernet.recipe import SupernetRecipe, train_supernet
from nasbert.train_supernet.shrink import ProgressiveShrinker, ShrinkConfig, assign_bins
from search_space import SearchSpace


class FakeScorer:
    """Loss = a fixed pseudo-random value per candidate, so the expected survivors can be computed.

    The values are a seeded permutation: distinct (no ties to break) and the same in every process
    (``hash(str)`` is salted per process, and its collisions made ties that failed this test once in CI).
    """

    def __init__(self, space: SearchSpace):
        candidates = list(space.block_candidates())
        ranks = np.random.default_rng(0).permutation(len(candidates))
        self.values = {c: rank / len(candidates) for c, rank in zip(candidates, ranks)}
        self.calls = 0

    def score(self, n, candidates):
        self.calls += len(candidates)
        return np.array([self.values[c] + n for c in candidates])


def test_bins_by_size_and_deletes_latency_outliers():
    params = np.array([1, 5, 6, 10, 10, 3], dtype=float)
    latency = np.array([1, 5, 6, 10, 1, 3], dtype=float)
    assert assign_bins(params, latency, 2).tolist() == [0, 0, 1, 1, -1, 0]


def test_shrinking_keeps_m_per_bin_and_drops_the_worse_half():
    space = SearchSpace.tiny()
    config = ShrinkConfig(bins=4, candidates=30, keep=5, warmup_steps=0, every_steps=1)
    shrinker = ProgressiveShrinker(space, config)
    params_max = shrinker.params.max()
    for block in shrinker.survivors:
        for b, alive in enumerate(block):
            p = shrinker.params[alive]
            assert ((p > b / 4 * params_max) | (b == 0)).all() and (p <= (b + 1) / 4 * params_max).all()
    before = shrinker.counts()
    scorer = FakeScorer(space)
    rng = np.random.default_rng(0)
    shrinker.shrink(scorer, rng)
    after = shrinker.counts()
    for n in range(space.num_blocks):
        for b in range(4):
            if before[n][b] <= 5:
                assert after[n][b] == before[n][b]
            else:
                sampled = min(30, before[n][b])
                assert after[n][b] == max(5, before[n][b] - sampled // 2)
    while not shrinker.finished:
        shrinker.shrink(scorer, rng)
    assert all(count == min(5, start) for block, starts in zip(shrinker.counts(), before)
               for count, start in zip(block, starts))
    # Without sampling (E >= bin size) the survivors are exactly the best m of each bin.
    exact = ProgressiveShrinker(space, ShrinkConfig(bins=4, candidates=10_000, keep=5))
    while not exact.finished:
        exact.shrink(scorer, rng)
    for b, alive in enumerate(exact.survivors[0]):
        members = ProgressiveShrinker(space, ShrinkConfig(bins=4)).survivors[0][b]
        best = sorted(members.tolist(), key=lambda i: (scorer.values[exact.candidates[i]], i))[:5]
        assert sorted(alive.tolist()) == sorted(best)


def test_paths_come_only_from_survivors():
    space = SearchSpace.tiny()
    shrinker = ProgressiveShrinker(space, ShrinkConfig(bins=4, candidates=50, keep=3))
    while not shrinker.finished:
        shrinker.shrink(FakeScorer(space), np.random.default_rng(1))
    alive = [{shrinker.candidates[i] for i in shrinker.block_survivors(n)} for n in range(space.num_blocks)]
    rng = np.random.default_rng(2)
    for _ in range(200):
        arch = shrinker.sample_path(rng)
        assert all(block in alive[n] for n, block in enumerate(arch))


class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("shrink_assets")
    return {"teacher": str(make_tiny_teacher(root / "teacher", layers=2)),
            "corpus": str(make_corpus(root / "corpus.txt", 300))}


def test_a_run_resumed_mid_shrink_matches_an_uninterrupted_one(assets, tmp_path, monkeypatch):
    options = dict(teacher=assets["teacher"], train_files=[assets["corpus"]], seq_len=32, batch_size=8,
                   widths=[16, 32], max_steps=24, save_every=6, eval_every=1000, warmup_steps=4, lr=2e-3, shrink=True,
                   shrink_bins=3, shrink_candidates=40, shrink_keep=4, shrink_warmup_steps=4, shrink_every=4,
                   shrink_dev_batches=2)
    reference = train_supernet(TrainConfig(output=str(tmp_path / "reference"), **options))

    original = SupernetRecipe.save_checkpoint

    def crash_after_step_12(self):
        original(self)
        if self.step == 12:
            raise Crash

    monkeypatch.setattr(SupernetRecipe, "save_checkpoint", crash_after_step_12)
    with pytest.raises(Crash):
        train_supernet(TrainConfig(output=str(tmp_path / "crashed"), **options))
    monkeypatch.setattr(SupernetRecipe, "save_checkpoint", original)
    resumed = train_supernet(TrainConfig(output=str(tmp_path / "crashed"), resume=True, **options))

    def log(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses = {r["step"]: r["train_loss_block"] for r in rows if "train_loss_block" in r}
        shrinks = {r["step"]: r["shrink_counts"] for r in rows if "shrink_counts" in r}
        return losses, shrinks

    (ref_losses, ref_shrinks), (res_losses, res_shrinks) = log(reference), log(resumed)
    assert [res_losses[s] for s in range(13, 25)] == [ref_losses[s] for s in range(13, 25)]
    assert res_shrinks == ref_shrinks and len(ref_shrinks) >= 3
    assert (reference / "block_losses.json").read_text() != ""
    ref_table = json.loads((reference / "block_losses.json").read_text())
    res_table = json.loads((resumed / "block_losses.json").read_text())
    def archs(table):
        return [[c["arch"] for c in b] for b in table["blocks"]]

    assert archs(ref_table) == archs(res_table)
    assert all(len(b) <= 3 * 4 for b in ref_table["blocks"])
