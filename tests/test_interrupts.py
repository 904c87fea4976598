"""Ctrl-C / SIGTERM: a long stage stops between two steps with a checkpoint, prints the command that resumes and
exits 130 / 143; that command continues with exactly the losses and weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import uninterrupted_run
from safetensors.torch import load_file
from tiny_assets import make_corpus, make_tiny_teacher

from nasbert.common.checkpoint import newest_checkpoint
from nasbert.common.signals import Interrupted, StopSignals, resume_command
from nasbert.train_supernet.config import TrainConfig
from nasbert.train_supernet.recipe import train_supernet

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
ARCH = "32:M,F,S3,I/16:F,M,S5,I"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupts")
    teacher = make_tiny_teacher(root / "teacher", layers=4)
    corpus = make_corpus(root / "corpus.txt", 300)
    return {"root": root, "teacher": str(teacher), "corpus": str(corpus)}


def metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def signal_after(command: list[str], log: Path, steps: int, signum: int) -> tuple[subprocess.CompletedProcess, int]:
    """Run `command`, send `signum` once its metrics.jsonl `log` has `steps` lines; its result and the step of the
    newest checkpoint."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 240
    while not (log.exists() and len(log.read_text().splitlines()) >= steps):
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-3000:]
        time.sleep(0.005)
    process.send_signal(signum)
    out, err = process.communicate(timeout=300)
    checkpoint = newest_checkpoint(log.parent)
    return subprocess.CompletedProcess(command, process.returncode, out, err), int(checkpoint.name.split("-")[1])


def resume_line(stderr: str) -> list[str]:
    """The printed resume command, to run with this interpreter."""
    (line,) = [line for line in stderr.splitlines() if line.startswith("interrupted by ")]
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[0] == "nasbert" and command[-1] == "--resume", line
    return [sys.executable, "-m", "nasbert", *command[1:]]


def test_sigterm_in_train_supernet_saves_exits_143_and_resumes_exactly(assets, tmp_path):
    def cli(output: Path) -> list[str]:
        return [sys.executable, "-m", "nasbert", "train-supernet", "--teacher", assets["teacher"], "--train-file",
                assets["corpus"], "--output", str(output), "--seq-len", "32", "--batch-size", "8", "--widths", "16",
                "32", "--warmup-steps", "5", "--lr", "2e-3", "--eval-every", "1000", "--candidates-per-block", "2",
                "--max-steps", "30", "--save-every", "100"]

    uninterrupted_run(cli(tmp_path / "reference"))
    run = tmp_path / "run"
    result, k = signal_after(cli(run), run / "metrics.jsonl", 3, signal.SIGTERM)
    assert result.returncode == 143, result.stderr[-3000:]
    assert 3 <= k < 30, "the signal came after the run had finished"
    assert (run / "checkpoints" / f"step-{k}" / "state.json").exists() and not (run / "block_losses.json").exists()
    uninterrupted_run(resume_line(result.stderr))  # the printed command, in this process (no second import)

    def losses(folder):
        return [(r["step"], r["train_loss_block"]) for r in metrics(folder) if "train_loss_block" in r]

    assert losses(run) == losses(tmp_path / "reference")  # each step once, with the uninterrupted losses
    weights = [load_file(folder / "checkpoints/step-30/model.safetensors") for folder in (run, tmp_path / "reference")]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert (run / "block_losses.json").exists()


def test_sigint_mid_refinement_exits_130_and_resume_gives_the_uninterrupted_losses(assets, tmp_path, capsys):
    supernet = train_supernet(TrainConfig(teacher=assets["teacher"], train_files=[assets["corpus"]],
                                          output=str(tmp_path / "supernet"), num_blocks=2, seq_len=32, batch_size=8,
                                          widths=[16, 32], max_steps=4, eval_every=100, save_every=100,
                                          candidates_per_block=2))

    def cli(output: Path) -> list[str]:
        return [sys.executable, "-m", "nasbert", "export", str(supernet), "--arch", ARCH, "--output", str(output),
                "--no-measure", "--refine-steps", "30", "--train-file", assets["corpus"], "--refine-batch-size", "8",
                "--refine-seq-len", "32", "--refine-lr", "1e-3", "--refine-warmup-steps", "3", "--save-every", "100"]

    uninterrupted_run(cli(tmp_path / "reference" / "student"))  # the same student name
    refine_dir = tmp_path / "student.refine"
    result, k = signal_after(cli(tmp_path / "student"), refine_dir / "metrics.jsonl", 3, signal.SIGINT)
    assert result.returncode == 130, result.stderr[-3000:]
    assert 3 <= k < 30, "the signal came after the refinement had finished"
    assert not (tmp_path / "student").exists()  # no student folder until the refinement is done
    capsys.readouterr()
    uninterrupted_run(resume_line(result.stderr))  # the printed command, in this process (no second import)
    assert f"resuming refinement from {refine_dir / 'checkpoints' / f'step-{k}'}" in capsys.readouterr().out

    def losses(folder):
        return [(r["step"], r["losses"]) for r in metrics(folder)]

    assert losses(refine_dir) == losses(tmp_path / "reference" / "student.refine")
    weights = [load_file(folder / "student/model.safetensors") for folder in (tmp_path, tmp_path / "reference")]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_sigint_mid_finetune_saves_a_checkpoint_and_exits_130(tmp_path, monkeypatch):
    from test_finetune import make_student, make_tokenizer, write_tsv
    from transformers import Trainer

    from nasbert.cli import main

    student = make_student(tmp_path / "student", make_tokenizer(tmp_path / "tokenizer"))
    train, dev = write_tsv(tmp_path / "train.tsv", 64, seed=0), write_tsv(tmp_path / "dev.tsv", 16, seed=1)
    original = Trainer.training_step

    def signalled_at_step_3(self, *args, **kwargs):
        if self.state.global_step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # arrives during step 3
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", signalled_at_step_3)
    output = tmp_path / "ft"
    with pytest.raises(Interrupted) as stopped:
        main(["finetune", str(student), "--train-file", str(train), "--validation-file", str(dev), "--output",
              str(output), "--batch-size", "8", "--epochs", "2", "--report-to", "none"])
    assert stopped.value.code == 130
    assert (tmp_path / "ft.partial/checkpoints/checkpoint-3/model.safetensors").exists()
    assert not output.exists()


def test_stop_signals_record_the_first_signal_and_restore_the_handlers(monkeypatch):
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals() as stop:
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # a second signal changes nothing
        assert stop.requested() and stop.signum == signal.SIGTERM
        assert stop.interrupted("x").code == 143
    assert signal.getsignal(signal.SIGTERM) is before
    monkeypatch.setattr(sys, "argv", ["/usr/bin/nasbert", "export", "run", "--output", "a b"])
    assert resume_command("export") == "nasbert export run --output 'a b' --resume"
    monkeypatch.setattr(sys, "argv", ["pytest"])
    assert resume_command("export") == "the same `nasbert export` command with --resume"
    assert resume_command("train-supernet", ["--config", "run/config.json"]) == \
        "nasbert train-supernet --config run/config.json --resume"
