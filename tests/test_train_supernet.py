"""train-supernet on a tiny teacher and corpus made here: convergence, ETD, resume, DDP, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import uninterrupted_run
from tiny_assets import make_corpus, make_tiny_teacher

from nasbert.cli import main
from nasbert.common.checkpoint import newest_checkpoint, save_checkpoint
from nasbert.train_supernet.config import TrainConfig
from nasbert.train_supernet.recipe import SupernetRecipe, train_supernet

FAST = dict(seq_len=32, batch_size=8, warmup_steps=10, lr=2e-3, eval_every=1000, eval_batches=2, eval_paths=2,
            widths=[16, 32])


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    return {"teacher": str(make_tiny_teacher(root / "teacher")), "corpus": str(make_corpus(root / "corpus.txt", 500)),
            "root": root}


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def train_losses(run: Path) -> dict[int, list[float]]:
    """step -> per-block training losses; a step logged twice (before a kill, after a resume) keeps the last."""
    return {row["step"]: row["train_loss_block"] for row in read_metrics(run) if "train_loss_block" in row}


def test_every_block_loss_halves_within_200_steps(assets, tmp_path):
    run = train_supernet(TrainConfig(teacher=assets["teacher"], train_files=[assets["corpus"]],
                                     output=str(tmp_path / "run"), max_steps=200, save_every=1000, **FAST))
    losses = train_losses(run)
    first = torch.tensor(losses[1])
    last = torch.tensor([losses[s] for s in range(191, 201)]).mean(0)  # mean of the last 10 steps
    assert (last <= 0.5 * first).all(), (first, last)
    tags = _tensorboard_tags(run / "tensorboard")
    assert {"train/loss_block1", "train/loss_block4", "dev/loss_block1", "train/lr", "train/tokens_per_s"} <= tags
    assert (run / "checkpoints/step-200/state.json").exists()


def _tensorboard_tags(folder: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def _step0_teacher_shaped_loss(assets, tmp_path, init: str, widths: list[int]) -> float:
    config = TrainConfig(teacher=assets["teacher"], train_files=[assets["corpus"]], output=str(tmp_path / init),
                         init=init, **{**FAST, "widths": widths})
    recipe = SupernetRecipe(config)
    recipe.setup()
    try:
        dev = recipe.evaluate({"teacher_shaped": recipe.space.largest_arch()})
    finally:
        recipe.cleanup()
    return sum(dev["teacher_shaped"])


def test_etd_impt_starts_closer_to_the_teacher_than_random_init(assets, tmp_path):
    narrow = [16, 24]  # largest width 24 < hidden 32: the leading slices must hold the important part
    random_loss = _step0_teacher_shaped_loss(assets, tmp_path / "a", "random", narrow)
    impt_loss = _step0_teacher_shaped_loss(assets, tmp_path / "b", "etd-impt", narrow)
    assert impt_loss < random_loss, (impt_loss, random_loss)
    # At the teacher's own width the teacher-shaped path is the teacher's block, permuted and unpermuted.
    assert _step0_teacher_shaped_loss(assets, tmp_path / "c", "etd-impt", [16, 32]) < 1e-8


def _cli(assets, output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nasbert", "train-supernet", "--teacher", assets["teacher"], "--train-file",
            assets["corpus"], "--output", str(output), "--seq-len", "32", "--batch-size", "8", "--widths", "16", "32",
            "--warmup-steps", "5", "--lr", "2e-3", "--eval-every", "1000", "--mlm-probability", "0.15",
            "--whole-word-mask", *extra]


def test_resume_after_sigkill_gives_exactly_the_uninterrupted_losses(assets, tmp_path):
    steps = ["--max-steps", "40", "--save-every", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    uninterrupted_run(_cli(assets, reference, *steps))

    run = tmp_path / "killed"
    process = subprocess.Popen(_cli(assets, run, *steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    deadline = time.time() + 240
    while not (run / "checkpoints/step-8/state.json").exists():
        assert process.poll() is None and time.time() < deadline, "the run ended before its checkpoint at step 8"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    k = int(newest_checkpoint(run).name.split("-")[1])
    assert k < 40, "the run finished before it was killed"
    uninterrupted_run(_cli(assets, run, *steps, "--resume"))  # in this process: no second import
    expected, resumed = train_losses(reference), train_losses(run)
    assert [resumed[s] for s in range(k + 1, 41)] == [expected[s] for s in range(k + 1, 41)]


def test_checkpoint_cut_off_mid_write_is_never_the_newest(tmp_path):
    state = {"w": torch.zeros(2)}
    save_checkpoint(tmp_path, 5, state, {}, {"step": 5})
    save_checkpoint(tmp_path, 9, state, {}, {"step": 9})
    (tmp_path / "checkpoints/step-9/state.json").unlink()  # renamed but incomplete (cannot happen, still ignored)
    (tmp_path / "checkpoints/.tmp-step-12").mkdir()  # a write cut off before its rename
    (tmp_path / "checkpoints/.tmp-step-12/state.json").write_text("{}")
    assert newest_checkpoint(tmp_path).name == "step-5"


def test_keeps_only_the_last_k_checkpoints(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, {"w": torch.zeros(1)}, {}, {"step": step}, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-3", "step-4"]


def test_two_process_gloo_run_under_torchrun_samples_the_same_paths(assets, tmp_path):
    run = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]  # free port
    args = _cli(assets, run, "--max-steps", "6", "--save-every", "3", "--log-every", "1")[1:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(torchrun + args[1:], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(run)
    paths = [row["paths_by_rank"] for row in metrics if "paths_by_rank" in row]
    assert len(paths) == 6 and all(len(p) == 2 and p[0] == p[1] for p in paths)
    assert len({p[0] for p in paths}) > 1  # the path changes from step to step
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in (run / "checkpoints/step-6").iterdir()) == [
        "model.safetensors", "optimizer.json", "optimizer.safetensors", "rng-rank0.json", "rng-rank0.safetensors",
        "rng-rank1.json", "rng-rank1.safetensors", "scheduler.json", "state.json"]  # no pickle


def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_inputs_exit_2_with_one_sentence(assets, tmp_path, capsys):
    base = ["train-supernet", "--teacher", assets["teacher"], "--seq-len", "32", "--batch-size", "8",
            "--widths", "16", "32", "--max-steps", "2"]
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\n")
    not_a_model = tmp_path / "not_a_model"
    not_a_model.mkdir()
    cases = [
        (base + ["--train-file", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "o1")], "does not exist"),
        (base + ["--train-file", str(empty), "--output", str(tmp_path / "o2")], "is empty"),
        (base + ["--train-file", str(blank), "--output", str(tmp_path / "o3")], "holds no text"),
        (["train-supernet", "--teacher", str(not_a_model), "--train-file", assets["corpus"], "--output",
          str(tmp_path / "o4")], "holds no Hugging Face model"),
        (base + ["--train-file", assets["corpus"], "--num-blocks", "3", "--output", str(tmp_path / "o5")],
         "do not divide into 3 blocks"),
    ]
    for args, expected in cases:
        code, message = _run_cli(args, capsys)
        assert code == 2 and expected in message, (args, message)
        assert not Path(args[args.index("--output") + 1]).exists()  # nothing half-written

    # An output folder that holds another run is not touched.
    run = tmp_path / "run"
    assert main(base + ["--train-file", assets["corpus"], "--output", str(run), "--save-every", "1"]) == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, message = _run_cli(base + ["--train-file", assets["corpus"], "--output", str(run)], capsys)
    assert code == 2 and "already holds a run" in message
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    # A corrupt checkpoint stops a resume with a sentence, and is left as it was.
    shutil.rmtree(run / "checkpoints/step-1")
    (run / "checkpoints/step-2/model.safetensors").write_bytes(b"not a safetensors file")
    code, message = _run_cli(base + ["--train-file", assets["corpus"], "--output", str(run), "--resume"], capsys)
    assert code == 2 and "is corrupt" in message
    assert (run / "checkpoints/step-2/model.safetensors").read_bytes() == b"not a safetensors file"
