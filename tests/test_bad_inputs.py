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
from transformers import AutoTokenizer

from nasbert.cli import main
from nasbert.common.checkpoint import newest_checkpoint
from nasbert.latency import machine
from nasbert.latency.lut import Entry, LatencyTable
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
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    save_student(build_student(space, space.validate(ARCH)), root / "student", tokenizer)
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
        return UsualSpeed(entries, 0.1, 3 * len(archs), [0.0] * len(archs))

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


def _lut_in_seconds(paths: dict, monkeypatch) -> None:
    """Every *_ms number divided by 1000: seconds under millisecond keys (it predicted 0.00 ms for every student)."""
    def seconds(node, key=""):
        if isinstance(node, dict):
            return {k: seconds(v, k if k.endswith("_ms") else key) for k, v in node.items()}
        return node / 1000 if key.endswith("_ms") and isinstance(node, float) else node

    _lut_copy(paths, lambda text: json.dumps(seconds(json.loads(text))))


def _lut_of_a_gpu(paths: dict, monkeypatch) -> None:
    """A table profiled on cuda, used on a machine where torch sees no GPU."""
    def on_gpu(text: str) -> str:
        data = json.loads(text)
        data["conditions"].update(device="cuda", device_name="NVIDIA H200")
        return json.dumps(data)

    _lut_copy(paths, on_gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _existing_file(paths: dict, monkeypatch) -> None:
    (Path(paths["tmp"]) / "existing.json").write_text('{"kept": true}\n')


def _corpus_bytes(data: bytes) -> Callable[[dict, pytest.MonkeyPatch], None]:
    def setup(paths: dict, monkeypatch) -> None:
        (Path(paths["tmp"]) / "corpus.txt").write_bytes(data)
    return setup


def _teacher_copy(paths: dict, edit: Callable[[Path], None]) -> Path:
    folder = Path(paths["tmp"]) / "teacher"
    shutil.copytree(paths["teacher"], folder)
    edit(folder)
    return folder


def _truncated_teacher_weights(paths: dict, monkeypatch) -> None:
    def cut(folder: Path) -> None:
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    _teacher_copy(paths, cut)


def with_own_code(folder: Path, marker: Path) -> None:
    """Give a model folder an auto_map naming its own Python file, which creates `marker` when imported."""
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "own_code.OwnConfig", "AutoModel": "own_code.OwnModel",
                          "AutoModelForMaskedLM": "own_code.OwnMaskedLM",
                          "AutoModelForSequenceClassification": "own_code.OwnClassifier"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "own_code.py").write_text(OWN_CODE.format(marker=str(marker)))


OWN_CODE = """from pathlib import Path

Path({marker!r}).write_text("the folder's code ran")

from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel


class OwnConfig(BertConfig):
    model_type = "bert"


class OwnModel(BertModel):
    config_class = OwnConfig


class OwnMaskedLM(BertForMaskedLM):
    config_class = OwnConfig


class OwnClassifier(BertForSequenceClassification):
    config_class = OwnConfig
"""


def _teacherwith_own_code(paths: dict, monkeypatch) -> None:
    _teacher_copy(paths, lambda folder: with_own_code(folder, Path(paths["tmp"]) / "marker"))


def _task_files(train: str, validation: str | None = None, suffix: str = ".tsv"):
    """A setup writing {tmp}/train{suffix} and {tmp}/dev{suffix}."""
    good = "sentence\tlabel\nthe cat runs\t1\nthe dog sleeps\t0\n"

    def setup(paths: dict, monkeypatch) -> None:
        (Path(paths["tmp"]) / f"train{suffix}").write_text(train)
        (Path(paths["tmp"]) / f"dev{suffix}").write_text(validation if validation is not None else good)
    return setup


def _good_task(paths: dict, monkeypatch) -> None:
    _task_files("sentence\tlabel\nthe cat runs\t1\nthe dog sleeps\t0\n")(paths, monkeypatch)


def _search_json(edit: Callable[[dict], None] | None = None) -> Callable[[dict, pytest.MonkeyPatch], None]:
    """A setup writing {tmp}/search.json as search writes it (one 5ms budget of ARCH), then `edit`ed."""
    def setup(paths: dict, monkeypatch) -> None:
        candidate = {"arch": ARCH, "params": 1, "flops": 1, "approx_loss": 0.1, "predicted_latency_ms": 1.0}
        data = {"run": paths["run"], "space": json.loads(Path(paths["space"]).read_text()), "block_weights": None,
                "budgets": [{"name": "5ms", "latency_budget_ms": 5.0, "params_budget": None, "winner": candidate,
                             "note": None, "top_k": [dict(candidate)]}]}
        if edit is not None:
            edit(data)
        (Path(paths["tmp"]) / "search.json").write_text(json.dumps(data))
    return setup


def _twice(data: dict) -> None:
    data["budgets"].append(json.loads(json.dumps(data["budgets"][0])))


def _named(name: str) -> Callable[[dict], None]:
    return lambda data: data["budgets"][0].update(name=name)


def _winner(arch: str) -> Callable[[dict], None]:
    return lambda data: data["budgets"][0]["winner"].update(arch=arch)


def _run_with_a_moved_teacher(paths: dict, monkeypatch) -> None:
    """A copy of the run whose stored teacher path no longer exists (the teacher was moved)."""
    run = Path(paths["tmp"]) / "run"
    shutil.copytree(paths["run"], run)
    config = json.loads((run / "config.json").read_text())
    config["train"]["teacher"] = str(Path(paths["tmp"]) / "moved-away")
    (run / "config.json").write_text(json.dumps(config))


def _run_with_a_moved_corpus(paths: dict, monkeypatch) -> None:
    run = Path(paths["tmp"]) / "run"
    shutil.copytree(paths["run"], run)
    config = json.loads((run / "config.json").read_text())
    config["train"]["train_files"] = [str(Path(paths["tmp"]) / "moved-corpus.txt")]
    (run / "config.json").write_text(json.dumps(config))


def _interrupted_refinement(paths: dict, monkeypatch) -> None:
    """The options file of a refinement left in {tmp}/student.refine, started with --refine-lr 0.0003."""
    from dataclasses import asdict

    from nasbert.export.config import RefineConfig

    folder = Path(paths["tmp"]) / "student.refine"
    folder.mkdir()
    saved = RefineConfig(train_files=[paths["corpus"]], output=str(folder), steps=2, seq_len=32, batch_size=4,
                         lr=3e-4, device="cpu", resume=True)
    (folder / "refine_config.json").write_text(json.dumps(asdict(saved), indent=2))


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
REFINE = ["--refine-steps", "2", "--train-file", "{corpus}", "--refine-seq-len", "32", "--refine-batch-size", "4"]
TRAIN = ["train-supernet", "--teacher", "{teacher}", "--train-file", "{corpus}", "--output", "{tmp}/run",
         "--seq-len", "32", "--widths", "16", "32"]
FINETUNE = ["finetune", "{student}", "--train-file", "{tmp}/train.tsv", "--validation-file", "{tmp}/dev.tsv",
            "--output", "{tmp}/ft", "--max-steps", "1", "--report-to", "none"]

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
         "no/teacher does not exist"),
    Case("teacher-with-a-broken-config", ["train-supernet", "--teacher", "{tmp}/teacher", "--train-file", "{corpus}",
                                          "--output", "{tmp}/run", "--seq-len", "32", "--widths", "16", "32"],
         "its config.json is not valid JSON", _teacher_with_a_broken_config),
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
    # tables that cannot be in milliseconds, or cannot be timed here
    Case("lut-in-seconds", ["latency", "predict", ARCH, "--lut", "{tmp}/lut.json"], "not milliseconds",
         _lut_in_seconds),
    Case("search-with-a-lut-in-seconds", SEARCH[:3] + ["{tmp}/lut.json"] + SEARCH[4:-1] + [
        "{tmp}/s.json", "--latency-budget", "5ms"], "not milliseconds", _lut_in_seconds),
    Case("calibrate-a-cuda-table-without-a-gpu", ["latency", "calibrate", "--lut", "{tmp}/lut.json", "--samples", "2"],
         "needs a CUDA device", _lut_of_a_gpu),
    # budgets twice; outputs that are inputs; replacing without --overwrite
    Case("budget-twice", SEARCH + ["--latency-budget", "5ms", "5ms"], "--latency-budget 5ms repeats 5ms"),
    Case("budget-twice-in-other-units", SEARCH + ["--latency-budget", "5ms", "0.005s"], "0.005s repeats 5ms"),
    Case("search-output-is-the-lut", SEARCH[:-1] + ["{lut}", "--latency-budget", "5ms"], "is the latency table"),
    Case("search-output-is-a-file-of-the-run", SEARCH[:-1] + ["{run}/config.json", "--params-budget", "1M"],
         "is a file of the run"),
    Case("search-output-exists", SEARCH[:-1] + ["{tmp}/existing.json", "--params-budget", "1M"],
         "pass --overwrite", _existing_file),
    Case("search-output-is-a-png", SEARCH[:-1] + ["{tmp}/search.png", "--params-budget", "1M"], "the plot's name"),
    Case("profile-over-an-existing-table", ["latency", "profile", "--output", "{lut}", "--space", "{space}"],
         "pass --overwrite"),
    Case("profile-output-is-the-space", ["latency", "profile", "--output", "{space}", "--space", "{space}",
                                         "--overwrite"], "is the --space file"),
    Case("export-output-is-the-run", ["export", "{run}", "--arch", ARCH, "--no-measure", "--output", "{run}"],
         "is the run folder"),
    Case("export-output-inside-the-run", ["export", "{run}", "--arch", ARCH, "--no-measure", "--output",
                                          "{run}/students"], "is the run folder"),
    # a hand-edited search.json: names are not paths, archs are in the run's space
    Case("search-json-name-escapes", EXPORT + ["--search", "{tmp}/search.json"], "not a budget with a unit",
         _search_json(_named("../../escaped"))),
    Case("search-json-absolute-name", EXPORT + ["--search", "{tmp}/search.json"], "not a budget with a unit",
         _search_json(_named("/tmp/escaped"))),
    Case("search-json-budget-twice", EXPORT + ["--search", "{tmp}/search.json"], "has the budget 5ms twice",
         _search_json(_twice)),
    Case("search-json-winner-outside-the-space", EXPORT + ["--search", "{tmp}/search.json"],
         "winner holds '64:M,F/16:F,M', not an arch of the run's space", _search_json(_winner("64:M,F/16:F,M"))),
    Case("search-json-bogus-winner", EXPORT + ["--search", "{tmp}/search.json"], "not an arch of the run's space",
         _search_json(_winner("rm -rf /"))),
    Case("search-json-top-k-outside-the-space", EXPORT + ["--search", "{tmp}/search.json"], "top_k[0] holds",
         _search_json(lambda data: data["budgets"][0]["top_k"][0].update(arch="32:M,F,M/16:F,M"))),
    Case("search-json-of-another-space", EXPORT + ["--search", "{tmp}/search.json"], "another space",
         _search_json(lambda data: data["space"].update(widths=[16, 32, 64]))),
    # sequence lengths past the teacher's positions (64), checked before any folder is made
    Case("seq-len-past-the-teacher", TRAIN[:7] + ["--seq-len", "128", "--widths", "16", "32"],
         "--seq-len 128 is longer than the 64 positions"),
    Case("refine-seq-len-past-the-teacher", EXPORT + ["--arch", ARCH] + REFINE[:-4] + ["--refine-seq-len", "128"],
         "--refine-seq-len 128 is longer than the 64 positions"),
    Case("finetune-max-seq-len-past-the-model", FINETUNE + ["--max-seq-len", "128"], "longer than the model's 64",
         _good_task),
    # learning rates and other numbers that must be positive and finite
    Case("train-lr-negative", TRAIN + ["--lr=-1"], "--lr must be a finite number, positive, got -1"),
    Case("train-lr-nan", TRAIN + ["--lr", "nan"], "--lr must be a finite number, positive, got nan"),
    Case("train-weight-decay-inf", TRAIN + ["--weight-decay", "inf"], "--weight-decay must be a finite number"),
    Case("refine-lr-nan", EXPORT + ["--arch", ARCH] + REFINE + ["--refine-lr", "nan"],
         "--refine-lr must be a finite number"),
    Case("refine-lr-negative", EXPORT + ["--arch", ARCH] + REFINE + ["--refine-lr=-1"],
         "--refine-lr must be a finite number"),
    Case("finetune-lr-negative", FINETUNE + ["--lr=-1"], "--lr must be a finite number", _good_task),
    Case("finetune-weight-decay-nan", FINETUNE + ["--weight-decay", "nan"], "--weight-decay must be", _good_task),
    # corpora that are not UTF-8 text
    Case("latin-1-corpus", TRAIN[:4] + ["{tmp}/corpus.txt"] + TRAIN[5:], "is not UTF-8 text",
         _corpus_bytes("le café était très bon\n".encode("latin-1") * 50)),
    Case("binary-corpus", TRAIN[:4] + ["{tmp}/corpus.txt"] + TRAIN[5:], "is not UTF-8 text",
         _corpus_bytes(bytes(range(256)) * 20)),
    # teachers that do not load
    Case("teacher-with-truncated-weights", ["train-supernet", "--teacher", "{tmp}/teacher"] + TRAIN[3:],
         "weights file is damaged or truncated", _truncated_teacher_weights),
    Case("teacher-from-the-hub-without-network", ["train-supernet", "--teacher", "nasbert-tests/no-such-model"]
         + TRAIN[3:], "could not be downloaded from the Hugging Face hub",
         lambda paths, mp: mp.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)),  # no network, at once
    Case("teacher-with-its-own-code", ["train-supernet", "--teacher", "{tmp}/teacher"] + TRAIN[3:],
         "runs only when you pass --trust-remote-code", _teacherwith_own_code),
    Case("finetune-a-folder-with-its-own-code", FINETUNE[:1] + ["{tmp}/teacher"] + FINETUNE[2:],
         "runs only when you pass --trust-remote-code",
         lambda paths, mp: (_teacherwith_own_code(paths, mp), _good_task(paths, mp))),
    Case("search-a-run-whose-teacher-moved", ["search", "{tmp}/run", "--params-budget", "1M", "--measure", "0",
                                              "--recheck-batches", "1", "--weight-students", "0", "--output",
                                              "{tmp}/s.json"], "pass --teacher", _run_with_a_moved_teacher),
    Case("export-a-run-whose-teacher-moved", ["export", "{tmp}/run", "--arch", ARCH, "--no-measure", "--output",
                                              "{tmp}/student"], "pass --teacher", _run_with_a_moved_teacher),
    Case("search-a-run-whose-corpus-moved", ["search", "{tmp}/run", "--params-budget", "1M", "--measure", "0",
                                             "--recheck-batches", "1", "--weight-students", "0", "--output",
                                             "{tmp}/s.json"], "moved-corpus.txt, which does not exist any more",
         _run_with_a_moved_corpus),
    # task files
    Case("task-empty-labels", FINETUNE, "rows without a label",
         _task_files("sentence\tlabel\nthe cat runs\t1\nthe dog sleeps\t\na bird sees\t0\n")),
    Case("task-ragged-rows", FINETUNE, "row 3 has 1 fields but its header has 2",
         _task_files("sentence\tlabel\nthe cat runs\t1\nthe dog sleeps\na bird sees\t0\n")),
    Case("task-without-a-label-column", FINETUNE, "has no label column 'label'",
         _task_files("sentence\tgrade\nthe cat runs\t1\nthe dog sleeps\t0\n")),
    Case("task-without-a-header", FINETUNE, "has no header row",
         _task_files("the cat runs\t1\nthe dog sleeps\t0\na bird sees\t1\n")),
    Case("task-with-quoted-separators", FINETUNE, "a tab inside quotes",
         _task_files('sentence\tlabel\n"the cat\truns"\t1\nthe dog sleeps\t0\n')),
    # resuming a refinement with a changed option
    Case("export-resume-with-a-changed-lr", EXPORT + ["--arch", ARCH] + REFINE + ["--refine-lr", "0.001", "--resume"],
         "--refine-lr 0.0003 -> 0.001 changed", _interrupted_refinement),
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


def test_what_the_refusals_name_works(world, tmp_path, capsys):
    """--teacher points a run at its moved teacher (search and export); --overwrite replaces search's results and a
    latency table."""
    paths = {**world, "tmp": str(tmp_path)}
    _run_with_a_moved_teacher(paths, None)
    results = tmp_path / "s.json"
    search = ["search", str(tmp_path / "run"), "--params-budget", "1M", "--measure", "0", "--recheck-batches", "1",
              "--weight-students", "0", "--top-k", "2", "--output", str(results), "--teacher", world["teacher"]]
    assert main(search) == 0 and json.loads(results.read_text())["budgets"][0]["top_k"]
    assert main(search) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert main(search + ["--overwrite"]) == 0
    assert main(["export", str(tmp_path / "run"), "--arch", ARCH, "--no-measure", "--output", str(tmp_path / "s"),
                 "--teacher", world["teacher"]]) == 0 and (tmp_path / "s" / "config.json").is_file()
    lut = _lut_copy(paths)
    profile = ["latency", "profile", "--output", str(lut), "--space", world["space"], "--threads", "1", "--seq-len",
               "16", "--min-run-time", "0.01", "--rounds", "1", "--no-progress"]
    assert main(profile) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert main(profile + ["--overwrite"]) == 0 and LatencyTable.load(lut).conditions.seq_len == 16
