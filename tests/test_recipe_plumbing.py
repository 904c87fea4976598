"""The recipe plumbing both training recipes share: the LR schedule's values, autocast on CPU, RNG round-trips,
the run-folder checks, and MetricsLog writing metrics.jsonl and tensorboard in one call."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from nasbert.common.recipe import (
    MetricsLog,
    autocast,
    capture_rng,
    check_run_dir,
    refuse_changed_settings,
    restore_rng,
    warmup_linear,
)
from nasbert.errors import UserError


def _lrs(warmup: int, total: int, steps: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = warmup_linear(optimizer, warmup, total)
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_then_linear_decay_to_zero():
    # step s: 2.0 * min((s + 1) / 4, (10 - s) / 6)
    expected = [0.5, 1.0, 1.5, 2.0, 2.0, 5 / 3, 4 / 3, 1.0, 2 / 3, 1 / 3, 0.0, 0.0]
    assert _lrs(4, 10, 12) == pytest.approx(expected)
    assert _lrs(0, 4, 5) == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])  # no warm-up


def test_autocast_changes_nothing_on_cpu():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
        product = a @ b
    assert product.dtype == torch.float32 and torch.equal(product, a @ b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_autocast_is_bf16_on_cuda():
    a = torch.randn(4, 4, device="cuda")
    with autocast(torch.device("cuda")):
        assert (a @ a).dtype == torch.bfloat16


class _Masker:
    """The part of Masker the RNG helpers use: a generator behind state_dict / load_state_dict."""

    def __init__(self):
        self.generator = torch.Generator().manual_seed(3)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def _draws(masker: _Masker) -> list:
    return [torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(),
            torch.rand(3, generator=masker.generator).tolist()]


def test_rng_round_trip_replays_every_source():
    masker = _Masker()
    state = capture_rng(torch.device("cpu"), masker)
    first = _draws(masker)
    assert _draws(masker) != first
    restore_rng(state, masker)
    assert _draws(masker) == first
    state.pop("cuda")  # a state saved before CUDA states were recorded
    restore_rng(state, masker)
    assert _draws(masker) == first
    assert capture_rng(torch.device("cpu"))["masker"] is None


def test_metrics_log_writes_jsonl_and_tensorboard_in_one_call(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = MetricsLog.open(tmp_path)
    metrics.log(3, {"train/loss": 1.5, "train/lr": 0.1}, loss=[1.0, 0.5], lr=0.1)
    metrics.log(4, {"train/loss": 1.25})  # scalars only: no JSON line
    metrics.log(5, paths=["a", "a"])  # JSON only
    metrics.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 3, "loss": [1.0, 0.5], "lr": 0.1}, {"step": 5, "paths": ["a", "a"]}]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {(e.step, e.value) for e in events.Scalars("train/loss")} == {(3, 1.5), (4, 1.25)}
    assert [(e.step, e.value) for e in events.Scalars("train/lr")] == [(3, pytest.approx(0.1))]


def test_run_folder_checks(tmp_path):
    run = tmp_path / "run"
    assert check_run_dir(run, "config.json", resume=False) is None  # new
    (run / "tensorboard").mkdir(parents=True)
    assert check_run_dir(run, "config.json", resume=False, refuse_foreign=True) is None  # a failed start's writer
    (run / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not a nasbert run"):
        check_run_dir(run, "config.json", resume=False, refuse_foreign=True)
    assert check_run_dir(run, "config.json", resume=False) is None  # refinement folders are not checked for that
    (run / "config.json").write_text(json.dumps({"train": {"lr": 0.1, "max_steps": 10}}))
    with pytest.raises(UserError, match="already holds a refinement; pass --resume .* another output"):
        check_run_dir(run, "config.json", resume=False, holds="a refinement", output="output")
    checked = []
    assert check_run_dir(run, "config.json", resume=True, same_settings=checked.append) is None  # no checkpoint yet
    assert checked == [run / "config.json"]


def test_a_resume_keeps_its_settings(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"train": {"lr": 0.1, "max_steps": 10}}))
    refuse_changed_settings(config_file, "train", {"lr": 0.1, "max_steps": 20}, may_change={"max_steps"})
    with pytest.raises(UserError, match="--resume with lr=0.2 but the run in .* used 0.1"):
        refuse_changed_settings(config_file, "train", {"lr": 0.2, "max_steps": 10}, may_change={"max_steps"})
    config_file.write_text("{")
    with pytest.raises(UserError, match="is corrupt"):
        refuse_changed_settings(config_file, "train", {}, may_change=())


def test_recipes_do_not_rewrite_the_plumbing():
    root = Path(__file__).resolve().parents[1] / "nasbert"
    for recipe in (root / "train_supernet/recipe.py", root / "export/refine.py"):
        text = recipe.read_text()
        for spelled in ("LambdaLR", "torch.autocast", "get_rng_state", "SummaryWriter", "tqdm"):
            assert spelled not in text, (recipe.name, spelled)
