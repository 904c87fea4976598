"""Hostile inputs, each through the command line: exit 2, one sentence on stderr, nothing written, nothing the
user had changed.

Every case runs `nasbert.cli.main` in-process on copies of a tiny world (teacher, corpus, trained run, latency
table, student folder) and compares every file of that world and of the case's own folder before and after.
Cases that need a file broken in a particular way make it in their own folder (`{tmp}`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny_assets import make_corpus, make_tiny_teacher

from nasbert.cli import main
from nasbert.common.checkpoint import newest_checkpoint
from nasbert.latency import machine
from nasbert.latency.lut import Entry
from nasbert.latency.measure import UsualSpeed
from nasbert.latency.profile import profile_space
from nasbert.registration import save_student
from nasbert.student import build_student
from nasbert.train_supernet.config import TrainConfig
from nasbert.train_supernet.recipe import train_supernet
from nasbert.train_supernet.run import load_run

ARCH = "32:M,F/16:F,M"  # a valid arch of the run's space (widths 16/32, 2 blocks of 2 layers)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("world")
    teacher = make_tiny_teacher(root / "teacher", layers=2)
    corpus = make_corpus(root / "corpus.txt", 200)
    run = train_supernet(TrainConfig(teacher=str(teacher), train_files=[str(corpus)], output=str(root / "run"),
                                     seq_len=32, batch_size=8, widths=[16, 32], max_steps=4, eval_every=100,
                                     save_every=2, candidates_per_block=15))
    space = load_run(run).space
    (root / "space.json").write_text(json.dumps(space.to_json()))
    profile_space(space, threads=1, seq_len=32, min_run_time_s=0.01, rounds=1, progress=False).save(root / "lut.json")
    save_student(build_student(space, space.validate(ARCH)), root / "student")
    return {"root": str(root), "teacher": str(teacher), "corpus": str(corpus), "run": str(run),
            "space": str(root / "space.json"), "lut": str(root / "lut.json"), "student": str(root / "student")}


def _snapshot(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for folder in folders for p in sorted(Path(folder).rglob("*"))}


# ---- what cases set up ----------------------------------------------------------------------------------


def _busy(paths: dict, monkeypatch) -> None:
    """A machine whose other processes want 8 cores, with the default (refusing) behaviour."""
    monkeypatch.delenv(machine.ALLOW_BUSY_ENV, raising=False)
    monkeypatch.setattr(machine, "runnable_elsewhere", lambda own_threads=0: 8.0)


def _lut_copy(paths: dict, edit: Callable[[str], str] | None = None, name: str = "lut.json") -> Path:
    copy = Path(paths["tmp"]) / name
    text = Path(paths["lut"]).read_text()
    copy.write_text(edit(text) if edit else text)
    return copy


def _truncated_lut(paths: dict, monkeypatch) -> None:
    _lut_copy(paths, lambda text: text[: len(text) // 2])


def _lut_without_units(paths: dict, monkeypatch) -> None:
    _lut_copy(paths, lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "units"}))


def _binary_lut(paths: dict, monkeypatch) -> None:
    (Path(paths["tmp"]) / "lut.json").write_bytes(bytes(range(256)) * 4)


def _calibration_85x(paths: dict, monkeypatch) -> None:
    """A quiet machine, but students timed 85x slower than the table's sums (the reported busy-machine fit)."""
    import importlib

    _lut_copy(paths)
    monkeypatch.delenv(machine.ALLOW_BUSY_ENV, raising=False)
    monkeypatch.setattr(machine, "runnable_elsewhere", lambda own_threads=0: 0.0)

    def timed(table, archs, *args, **kwargs):
        entries = [Entry(85 * table.predict_ms(a, ("pooler",), calibrated=False), 0.0, 3) for a in archs]
        return UsualSpeed(entries, 0.1, 3 * len(archs), 0, [], [0.0] * len(archs))

    monkeypatch.setattr(importlib.import_module("nasbert.latency.calibrate"), "measure_students", timed)


def _busy_lut_copy(paths: dict, monkeypatch) -> None:
    _lut_copy(paths)
    _busy(paths, monkeypatch)


def _empty_corpus(paths: dict, monkeypatch) -> None:
    (Path(paths["tmp"]) / "empty.txt").write_text("")


def _broken_student(paths: dict, monkeypatch) -> None:
    folder = Path(paths["tmp"]) / "student"
    shutil.copytree(paths["student"], folder)
    (folder / "config.json").write_text("{not json")


def _teacher_with_a_broken_config(paths: dict, monkeypatch) -> None:
    folder = Path(paths["tmp"]) / "teacher"
    shutil.copytree(paths["teacher"], folder)
    (folder / "config.json").write_text("{broken")


def _own_run(paths: dict, monkeypatch) -> Path:
    """A 4-step run of its own (a run cannot move), cut back to its step-2 checkpoint."""
    run = Path(paths["tmp"]) / "run"
    assert main(_train_argv(paths, run) + ["--max-steps", "4"]) == 0
    shutil.rmtree(run / "checkpoints/step-4")
    return newest_checkpoint(run)


class _PlantedCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        import builtins

        return builtins.open, (self.marker, "w")


def _pickled_optimizer(paths: dict, monkeypatch) -> None:
    checkpoint = _own_run(paths, monkeypatch)
    for name in ("optimizer.json", "optimizer.safetensors"):
        (checkpoint / name).unlink()
    torch.save(_PlantedCode(str(Path(paths["tmp"]) / "marker")), checkpoint / "optimizer.pt")


def _truncated_checkpoint_weights(paths: dict, monkeypatch) -> None:
    checkpoint = _own_run(paths, monkeypatch)
    data = (checkpoint / "model.safetensors").read_bytes()
    (checkpoint / "model.safetensors").write_bytes(data[: len(data) // 2])


def _garbage_pickle(paths: dict, monkeypatch) -> None:
    checkpoint = Path(paths["tmp"]) / "checkpoints/step-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text('{"step": 1}')
    (checkpoint / "optimizer.pt").write_bytes(b"not a pickle at all")


def _train_argv(paths: dict, output: Path | str) -> list[str]:
    return ["train-supernet", "--teacher", paths["teacher"], "--train-file", paths["corpus"], "--output", str(output),
            "--seq-len", "32", "--batch-size", "8", "--widths", "16", "32", "--eval-every", "100", "--save-every", "2"]


# ---- the cases ------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    argv: list[str]  # {teacher} {corpus} {run} {space} {lut} {student} {tmp}, or "TRAIN" for _train_argv({tmp}/run)
    message: str  # a part of the one sentence
    setup: Callable[[dict, pytest.MonkeyPatch], None] | None = None


SEARCH = ["search", "{run}", "--lut", "{lut}", "--measure", "0", "--recheck-batches", "1", "--output",
          "{tmp}/search.json"]
EXPORT = ["export", "{run}", "--no-measure", "--output", "{tmp}/student"]

CASES = [
    # malformed arch strings
    Case("arch-empty", ["arch", "", "--space", "{space}"], "the arch string is empty"),
    Case("arch-garbage", ["arch", "not an arch", "--space", "{space}"], "contains spaces"),
    Case("arch-identity-inside-a-block", ["arch", "32:I,F/16:F,M", "--space", "{space}"],
         "identities may only end a block"),
    Case("arch-width-outside-the-space", ["arch", "64:M,F/16:F,M", "--space", "{space}"],
         "not in the space's widths"),
    Case("arch-unknown-op", ["arch", "32:X,F/16:F,M", "--space", "{space}"], "unknown op 'X'"),
    Case("arch-all-identity-block", ["arch", "32:I,I/16:F,M", "--space", "{space}"], "is all identity"),
    Case("arch-too-few-blocks", ["arch", "32:M,F", "--space", "{space}"], "has 1 blocks but the space has 2"),
    Case("arch-too-many-layers", ["arch", "32:M,F,I/16:F,M", "--space", "{space}"], "has 3 layers but the space has 2"),
    Case("predict-malformed-arch", ["latency", "predict", "32:I,F/16:F,M", "--lut", "{lut}"],
         "identities may only end a block"),
    Case("export-malformed-arch", EXPORT + ["--arch", "32:I,F/16:F,M"], "identities may only end a block"),
    # budgets
    Case("budget-without-unit", SEARCH + ["--latency-budget", "5"], "unit"),
    Case("budget-negative", SEARCH + ["--latency-budget=-5ms"], "-5ms"),
    Case("budget-zero", SEARCH + ["--latency-budget", "0ms"], "0ms"),
    Case("budget-nan", SEARCH + ["--latency-budget", "nanms"], "nanms"),
    Case("budget-inf", SEARCH + ["--latency-budget", "infms"], "infms"),
    Case("budget-impossible", SEARCH + ["--latency-budget", "0.0001ms"], "the smallest latency this space can reach"),
    Case("search-without-a-run", ["search", "{tmp}/nothing", "--params-budget", "1M", "--output", "{tmp}/s.json"],
         "not a train-supernet run"),
    # latency tables
    Case("lut-truncated", ["latency", "validate", "--lut", "{tmp}/lut.json", "--samples", "2"], "not readable JSON",
         _truncated_lut),
    Case("lut-binary", ["latency", "calibrate", "--lut", "{tmp}/lut.json", "--samples", "2"], "not readable JSON",
         _binary_lut),
    Case("lut-without-units", ["latency", "predict", ARCH, "--lut", "{tmp}/lut.json"], "does not say its units",
         _lut_without_units),
    Case("search-with-a-truncated-lut", ["search", "{run}", "--latency-budget", "5ms", "--lut", "{tmp}/lut.json",
                                         "--output", "{tmp}/s.json"], "not readable JSON", _truncated_lut),
    Case("lut-missing", ["latency", "predict", ARCH, "--lut", "{tmp}/missing.json"], "does not exist"),
    Case("profile-output-is-a-folder", ["latency", "profile", "--output", "{tmp}", "--space", "{space}"],
         "is a folder"),
    # a busy machine, an implausible calibration
    Case("profile-on-a-busy-machine", ["latency", "profile", "--output", "{tmp}/lut.json", "--space", "{space}",
                                       "--threads", "1", "--seq-len", "16", "--min-run-time", "0.01"],
         "too busy to time a latency table", _busy),
    Case("calibrate-on-a-busy-machine", ["latency", "calibrate", "--lut", "{tmp}/lut.json", "--samples", "2",
                                         "--min-run-time", "0.01"], "too busy to time a calibration", _busy_lut_copy),
    Case("validate-on-a-busy-machine", ["latency", "validate", "--lut", "{tmp}/lut.json", "--samples", "2",
                                        "--min-run-time", "0.01"], "too busy to time validation figures",
         _busy_lut_copy),
    Case("measure-on-a-busy-machine", ["latency", "measure", "{student}", "--threads", "1", "--seq-len", "32",
                                        "--min-run-time", "0.01"],
         "too busy to time a measured latency", _busy),
    Case("calibration-85x", ["latency", "calibrate", "--lut", "{tmp}/lut.json", "--samples", "6"],
         "implausible factors", _calibration_85x),
    Case("measure-a-broken-student", ["latency", "measure", "{tmp}/student"], "student", _broken_student),
    Case("measure-not-a-student", ["latency", "measure", "{tmp}"], "not a student folder"),
    # corpora and teachers
    Case("empty-corpus", ["train-supernet", "--teacher", "{teacher}", "--train-file", "{tmp}/empty.txt", "--output",
                          "{tmp}/run", "--seq-len", "32", "--widths", "16", "32"], "is empty", _empty_corpus),
    Case("missing-corpus", ["train-supernet", "--teacher", "{teacher}", "--train-file", "{tmp}/none.txt", "--output",
                            "{tmp}/run", "--seq-len", "32", "--widths", "16", "32"], "none.txt does not exist"),
    Case("missing-teacher-folder", ["train-supernet", "--teacher", "{tmp}/no/teacher", "--train-file", "{corpus}",
                                    "--output", "{tmp}/run", "--seq-len", "32", "--widths", "16", "32"],
         "cannot load a teacher"),
    Case("teacher-with-a-broken-config", ["train-supernet", "--teacher", "{tmp}/teacher", "--train-file", "{corpus}",
                                          "--output", "{tmp}/run", "--seq-len", "32", "--widths", "16", "32"],
         "cannot load a teacher", _teacher_with_a_broken_config),
    Case("blocks-that-do-not-divide-the-teacher", ["train-supernet", "--teacher", "{teacher}", "--train-file",
                                                   "{corpus}", "--output", "{tmp}/run", "--seq-len", "32",
                                                   "--widths", "16", "32", "--num-blocks", "3"], "divide"),
    # checkpoints
    Case("resume-a-pickled-optimizer", ["TRAIN", "--max-steps", "4", "--resume"], "can run code", _pickled_optimizer),
    Case("resume-truncated-weights", ["TRAIN", "--max-steps", "4", "--resume"], "is corrupt",
         _truncated_checkpoint_weights),
    Case("convert-a-folder-without-checkpoints", ["convert-checkpoint", "{tmp}"], "neither a run folder"),
    Case("convert-a-garbage-pickle", ["convert-checkpoint", "{tmp}/checkpoints/step-1"], "could not be read",
         _garbage_pickle),
    # student folders
    Case("export-without-a-run", ["export", "{tmp}/nothing", "--arch", ARCH, "--output", "{tmp}/student"],
         "not a train-supernet run"),
    Case("finetune-a-missing-student", ["finetune", "{tmp}/none", "--train-file", "{corpus}", "--validation-file",
                                        "{corpus}", "--output", "{tmp}/ft"], "does not exist"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_exits_2_with_one_sentence_and_writes_nothing(case, world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a missing teacher must not become a download
    paths = {**world, "tmp": str(tmp_path)}
    if case.setup is not None:
        case.setup(paths, monkeypatch)
    argv = [a.format(**paths) for a in case.argv]
    if argv[0] == "TRAIN":
        argv = _train_argv(paths, tmp_path / "run") + argv[1:]
    before = _snapshot(Path(world["root"]), tmp_path)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("nasbert ")]
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert case.message in lines[0], lines[0]
    assert _snapshot(Path(world["root"]), tmp_path) == before
    assert not (tmp_path / "marker").exists()
