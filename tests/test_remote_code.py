"""Remote code only when asked: a folder's own Python (an `auto_map` in its config) runs under nasbert only with
--trust-remote-code; nasbert's own students load through the registered classes and never import their copy.

Each folder with code of its own here carries `own_code.py`, which writes a marker file when it is imported: the
marker is how the tests see whether the folder's code ran.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_bad_inputs import with_own_code
from test_finetune import make_student, make_tokenizer, write_tsv
from tiny_assets import make_tiny_teacher

from nasbert.cli import main
from nasbert.common.remote_code import code_files, is_nasbert_student, trust_remote_code
from nasbert.common.teacher import load_teacher
from nasbert.errors import UserError
from nasbert.finetune.config import Task
from nasbert.finetune.models import load_student

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("remote_code")
    tokenizer = make_tokenizer(root / "tokenizer")
    return {"root": root, "teacher": make_tiny_teacher(root / "teacher", layers=2),
            "student": make_student(root / "student", tokenizer),
            "train": write_tsv(root / "train.tsv", 32, seed=0), "dev": write_tsv(root / "dev.tsv", 16, seed=1)}


def _own_code_copy(source: Path, tmp_path: Path) -> tuple[Path, Path]:
    folder, marker = tmp_path / "own", tmp_path / "marker"
    shutil.copytree(source, folder)
    with_own_code(folder, marker)
    return folder, marker


def _finetune(assets, model: Path, output: Path, *flags: str) -> int:
    return main(["finetune", str(model), "--train-file", str(assets["train"]), "--validation-file",
                 str(assets["dev"]), "--output", str(output), "--max-steps", "2", "--batch-size", "8",
                 "--report-to", "none", *flags])


def test_finetune_runs_a_folders_own_code_only_with_the_flag(assets, tmp_path, capsys):
    folder, marker = _own_code_copy(assets["teacher"], tmp_path)
    assert _finetune(assets, folder, tmp_path / "ft") == 2
    err = capsys.readouterr().err
    assert "carries its own Python code (own_code.py" in err and "--trust-remote-code" in err
    assert not marker.exists() and not (tmp_path / "ft").exists()
    assert _finetune(assets, folder, tmp_path / "ft", "--trust-remote-code") == 0
    assert marker.exists() and (tmp_path / "ft" / "config.json").is_file()


def test_a_teacher_with_its_own_code_loads_only_with_the_flag(assets, tmp_path, capsys):
    folder, marker = _own_code_copy(assets["teacher"], tmp_path)
    with pytest.raises(UserError, match="carries its own Python code .* only when you pass --trust-remote-code"):
        load_teacher(str(folder))
    assert not marker.exists()
    teacher = load_teacher(str(folder), trust_remote_code=True)
    assert marker.exists() and type(teacher.model).__name__ == "OwnModel"
    marker.unlink()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sees a dog .\n" * 300)
    argv = ["train-supernet", "--teacher", str(folder), "--train-file", str(corpus), "--output", str(tmp_path / "run"),
            "--seq-len", "16", "--batch-size", "4", "--widths", "16", "32", "--max-steps", "1", "--eval-every", "100",
            "--save-every", "1", "--candidates-per-block", "2"]
    assert main(argv) == 2 and "--trust-remote-code" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(argv + ["--trust-remote-code"]) == 0 and (tmp_path / "run" / "config.json").is_file()


def test_a_nasbert_student_loads_through_the_registered_classes_never_its_copy(assets, tmp_path):
    folder = tmp_path / "student"
    shutil.copytree(assets["student"], folder)
    marker = tmp_path / "marker"
    with open(folder / "modeling_nasbert.py", "a") as code:  # the copy would say so if it were imported
        code.write(f"\nfrom pathlib import Path\nPath({str(marker)!r}).write_text('the copy ran')\n")
    config = json.loads((folder / "config.json").read_text())
    assert is_nasbert_student(config) and trust_remote_code(folder, False, "model folder") is False
    model = load_student(folder, Task(["sentence"], "label", ["0", "1"]))
    assert type(model).__module__ == "nasbert.modeling_nasbert" and not marker.exists()


@pytest.mark.parametrize("tamper", ["model auto_map", "tokenizer auto_map"])
def test_a_student_whose_auto_map_names_other_code_is_not_nasberts(assets, tmp_path, tamper):
    folder = tmp_path / "student"
    shutil.copytree(assets["student"], folder)
    if tamper == "model auto_map":
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"]["AutoModel"] = "own_code.OwnModel"
        (folder / "config.json").write_text(json.dumps(config))
    else:
        tokenizer = json.loads((folder / "tokenizer_config.json").read_text())
        tokenizer["auto_map"] = {"AutoTokenizer": ["own_tokenizer.OwnTokenizer", None]}
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    with pytest.raises(UserError, match="carries its own Python code .* --trust-remote-code"):
        trust_remote_code(folder, False, "model folder")
    assert trust_remote_code(folder, True, "model folder") is True


def test_latency_measure_never_runs_a_folders_own_code(assets, tmp_path, capsys):
    folder, marker = _own_code_copy(assets["teacher"], tmp_path)
    assert main(["latency", "measure", str(folder), "--threads", "1", "--seq-len", "16", "--min-run-time",
                 "0.01"]) == 2
    assert "carries its own Python code" in capsys.readouterr().err and not marker.exists()


def test_code_files_of_an_auto_map():
    assert code_files({"AutoConfig": "configuration_x.XConfig", "AutoModel": "modeling_x.XModel",
                       "AutoTokenizer": ["tokenization_x.XTokenizer", None]}) == [
        "configuration_x.py", "modeling_x.py", "tokenization_x.py"]
    assert code_files({"AutoModel": "someone/repo--modeling_y.YModel"}) == ["modeling_y.py"]
    assert code_files(None) == [] and code_files("garbage") == []
