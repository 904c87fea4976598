"""One writer per folder, wired into the stages: a second train-supernet on one --output exits 2 naming the first,
which finishes untouched; export, refinement and finetune folders held by another process are refused before
anything is written; an export never replaces a non-empty folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tiny_assets import make_corpus, make_tiny_teacher

from nasbert.cli import main
from nasbert.common.lock import LOCK_FILE
from nasbert.errors import UserError
from nasbert.export.config import ExportOptions, RefineConfig
from nasbert.export.pipeline import ExportRequest, export_students
from nasbert.export.refine import RefineRecipe
from nasbert.finetune.config import FinetuneConfig
from nasbert.finetune.trainer import finetune
from search_space import Arch

HOLD = textwrap.dedent("""
    import sys
    from nasbert.common.lock import folder_lock
    with folder_lock(sys.argv[1], what=sys.argv[2]):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes our stdin
""")


@pytest.fixture
def holder(tmp_path):
    """Starts another process holding a folder (as `what`) until the test ends; returns it."""
    started = []

    def hold(folder: Path, what: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in started:
        process.stdin.close()
        process.wait(timeout=60)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (but the lock) with its size and mtime: what a refused command must not change."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_FILE}


def test_a_second_train_supernet_on_one_output_exits_2_and_the_first_finishes_untouched(tmp_path, capsys):
    teacher, corpus = make_tiny_teacher(tmp_path / "teacher", layers=2), make_corpus(tmp_path / "corpus.txt", 100)
    run = tmp_path / "run"

    def cli(*extra: str) -> list[str]:
        return [sys.executable, "-m", "nasbert", "train-supernet", "--teacher", str(teacher), "--train-file",
                str(corpus), "--output", str(run), "--num-blocks", "2", "--seq-len", "16", "--batch-size", "4",
                "--widths", "16", "32", "--eval-every", "1000", "--candidates-per-block", "2", *extra]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cli("--max-steps", "6", "--seed", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    lock, deadline = run / LOCK_FILE, time.time() + 240
    while True:  # the first run holds the folder: stop it there, so the second one meets it for sure
        try:
            if json.loads(lock.read_text())["pid"] == first.pid:
                break
        except (OSError, ValueError, KeyError):
            pass
        assert first.poll() is None and time.time() < deadline, first.communicate()[1][-3000:]
        time.sleep(0.005)
    first.send_signal(signal.SIGSTOP)
    try:
        before = snapshot(run)
        capsys.readouterr()
        code = main(cli("--max-steps", "3", "--seed", "2")[3:])  # in this process: no second interpreter to start
        after = snapshot(run)
    finally:
        first.send_signal(signal.SIGCONT)
    stderr = capsys.readouterr().err
    assert code == 2, stderr[-3000:]
    message = stderr.strip().splitlines()[-1]
    assert f"is in use by train-supernet (pid {first.pid} on" in message and str(run) in message, message
    assert after == before  # the refusal came before any write
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    config = json.loads((run / "config.json").read_text())["train"]
    assert (config["seed"], config["max_steps"]) == (1, 6)  # the first run's options, not the second's
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-6"]
    assert [row["step"] for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "train_loss_block" in row] == [1, 2, 3, 4, 5, 6]
    assert not lock.exists()


class Unreadable:
    """Stands for a run: reading it is the first thing an export does once its folder checks pass."""

    @property
    def space(self):
        raise UserError("the folder checks passed")


def test_export_is_refused_on_a_held_or_existing_output_before_anything_is_written(tmp_path, holder):
    request = [ExportRequest("s", Arch.parse("32:M,F/16:F,M"))]
    held = tmp_path / "held"
    process = holder(held, "export")
    with pytest.raises(UserError, match=f"in use by export \\(pid {process.pid} on"):
        export_students(Unreadable(), request, held, ExportOptions())
    assert os.listdir(held) == [LOCK_FILE]

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    (tmp_path / "empty").mkdir()
    for output, requests in ((theirs, request), (tmp_path / "empty", request),
                             (tmp_path, [ExportRequest("theirs", request[0].arch), *request])):
        with pytest.raises(UserError, match="already exists; choose another --output"):
            export_students(Unreadable(), requests, output, ExportOptions())
    assert os.listdir(theirs) == ["notes.txt"] and (theirs / "notes.txt").read_text() == "mine"
    assert os.listdir(tmp_path / "empty") == [] and not (tmp_path / "s").exists()
    with pytest.raises(UserError, match="is a file"):
        export_students(Unreadable(), request, theirs / "notes.txt", ExportOptions())

    # A killed export leaves its lock file: that folder is taken over, and removed again when nothing is written.
    process.kill()
    process.wait()
    with pytest.raises(UserError, match="the folder checks passed"):
        export_students(Unreadable(), request, held, ExportOptions())
    assert not held.exists()
    with pytest.raises(UserError, match="the folder checks passed"):
        export_students(Unreadable(), request, tmp_path / "new", ExportOptions())
    assert not (tmp_path / "new").exists()


def test_a_held_refinement_folder_is_refused(tmp_path, holder):
    folder = tmp_path / "students.refine"
    process = holder(folder, "export")
    config = RefineConfig(train_files=["corpus.txt"], output=str(folder), steps=5, device="cpu")
    recipe = RefineRecipe(config, None, {}, {})
    with pytest.raises(UserError, match=f"students.refine is in use by export \\(pid {process.pid} on"):
        recipe.setup()
    recipe.cleanup()
    assert os.listdir(folder) == [LOCK_FILE]


def test_a_held_finetune_output_is_refused_and_a_failed_start_leaves_no_folder(tmp_path, holder):
    config = FinetuneConfig(model=str(tmp_path / "model"), train_file="train.tsv", validation_file="dev.tsv",
                            output=str(tmp_path / "ft"))
    process = holder(tmp_path / "ft", "finetune")
    with pytest.raises(UserError, match=f"ft is in use by finetune \\(pid {process.pid} on"):
        finetune(config)
    assert not (tmp_path / "ft.partial").exists()
    # Not held: this run holds the folder it made, fails on the missing model, and leaves nothing behind.
    config.output = str(tmp_path / "ft2")
    with pytest.raises(UserError, match="model"):
        finetune(config)
    assert not (tmp_path / "ft2").exists()
