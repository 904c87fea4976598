"""The command line: user errors end with one sentence and exit code 2; it starts fast, every flag has help,
flags come from the config dataclasses, `--space` takes a run folder, and every command has its tools/X.py."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from doc_commands import bash_lines

from nasbert.cli import main
from nasbert.commands.base import COMMANDS, add_config_arguments, build_parser, config_from_args, given_values
from nasbert.errors import UserError
from nasbert.train_supernet.config import TrainConfig
from search_space import SearchSpace

ARCH = "256:M,F,S5,F,I,I/512:M,F,M,F,M,F/128:M,F,I,I,I,I/512:M,F,M,F,M,F"


def test_arch_prints_params_and_flops(capsys):
    assert main(["arch", ARCH]) == 0
    out = capsys.readouterr().out
    assert "params      45,187,328" in out and "FLOPs" in out


def test_bad_arch_exits_2_with_one_sentence(capsys):
    assert main(["arch", "256:M,I,F"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "identities may only end a block" in err


def test_bad_space_file_exits_2(tmp_path, capsys):
    space = tmp_path / "space.json"
    space.write_text('{"widths": [100]}')
    assert main(["space", "--space", str(space)]) == 2
    assert "not a valid search space" in capsys.readouterr().err
    assert main(["space", "--space", str(tmp_path / "missing.json")]) == 2


def test_console_entry_point_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "nasbert", "space"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "97,650" in result.stdout


# ---- start-up time and what the command line imports --------------------------------------------------------------

HEAVY = ("torch", "transformers", "datasets")


def _best_of_3_seconds(argv: list[str]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "nasbert", *argv], capture_output=True, text=True, timeout=120)
        best = min(best, time.perf_counter() - start)
        assert result.returncode == 0, result.stderr[-2000:]
    return best


@pytest.mark.parametrize("argv", [["--help"], ["train-supernet", "--help"]])
def test_help_starts_in_under_a_second(argv):
    seconds = _best_of_3_seconds(argv)
    print(f"nasbert {' '.join(argv)}: {seconds:.2f} s (best of 3, fresh process)")
    assert seconds < 1.0


def test_the_command_line_imports_no_torch_transformers_or_datasets():
    """Every command module imports its stage code inside `run`; `import nasbert` loads no model class."""
    code = ("import sys, nasbert, nasbert.cli; from nasbert.commands.base import build_parser; build_parser(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_model_classes_load_on_first_access_and_register_the_auto_classes():
    code = textwrap.dedent("""
        import sys, nasbert
        assert "transformers" not in sys.modules and "NasbertModel" in dir(nasbert)
        from nasbert import NasbertModel
        from transformers import AutoConfig
        assert AutoConfig.for_model("nasbert_student").__class__.__name__ == "NasbertConfig"
        assert nasbert.NasbertModel is NasbertModel and NasbertModel.__module__ == "nasbert.modeling_nasbert"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


# ---- every flag has help, defaults shown ---------------------------------------------------------------------------


def _parsers(parser: argparse.ArgumentParser, name: str = "nasbert"):
    """(name, parser) of `parser` and every sub(-sub)command under it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))]


def test_every_option_of_every_command_has_help_and_shows_its_default():
    parsers = dict(_parsers(build_parser()))
    assert {"nasbert latency profile", "nasbert latency measure", "nasbert export", "nasbert search"} <= set(parsers)
    for name, parser in parsers.items():
        for action in _options(parser):
            flag = "/".join(action.option_strings) or action.dest
            assert action.help and action.help.strip(), f"{name} {flag} has no help"
            takes_value = action.nargs != 0
            if takes_value and action.default not in (None, [], "") and not action.required:
                assert "default" in action.help, f"{name} {flag}: its default {action.default!r} is not shown"


def test_train_supernet_flags_show_the_config_defaults():
    """train-supernet's flags default to None (a --config file fills what is not given): the help still shows
    TrainConfig's default for every field that has one, and every field is a flag."""
    parser = dict(_parsers(build_parser()))["nasbert train-supernet"]
    by_dest = {a.dest: a for a in _options(parser)}
    for f in dataclasses.fields(TrainConfig):
        action = by_dest[f.name]
        if action.nargs != 0 and f.default not in (None, "", dataclasses.MISSING):
            assert f"(default: {f.default})" in action.help, (f.name, action.help)
    assert len(by_dest) == 44  # --config + one per field


def test_run_config_keys_are_unchanged():
    """A run's config.json stores asdict(TrainConfig): old run folders must keep loading (a new field has a
    default, so a config.json without it loads)."""
    assert {f.name for f in dataclasses.fields(TrainConfig)} == {
        "teacher", "train_files", "output", "validation_files", "validation_fraction", "text_column", "seq_len",
        "max_train_sequences", "max_validation_sequences", "num_blocks", "widths", "init", "importance_batches",
        "batch_size", "grad_accum", "lr", "weight_decay", "warmup_steps", "max_grad_norm", "max_steps", "epochs",
        "mlm_probability", "whole_word_mask", "chained_inputs", "eval_every", "eval_batches", "eval_paths",
        "save_every", "keep_checkpoints", "log_every", "seed", "device", "resume", "shrink", "shrink_bins",
        "shrink_candidates", "shrink_keep", "shrink_warmup_steps", "shrink_every", "shrink_dev_batches",
        "latency_table", "candidates_per_block", "trust_remote_code"}


# ---- flags generated from a config dataclass ----------------------------------------------------------------------


@dataclasses.dataclass
class _Base:
    """base options"""

    files: list[str] = dataclasses.field(default_factory=list, metadata={"flag": "file", "help": "input files"})


@dataclasses.dataclass(kw_only=True)  # `name` has no default, after a base field with one
class _Toy(_Base):
    name: str = dataclasses.field(metadata={"positional": True, "help": "a name"})
    steps: int = dataclasses.field(default=10, metadata={"help": "how many steps"})
    rate: float | None = dataclasses.field(default=None, metadata={"help": "a rate"})
    widths: list[int] | None = dataclasses.field(default=None, metadata={"help": "widths"})
    mode: str = dataclasses.field(default="a", metadata={"choices": ("a", "b"), "help": "a mode"})
    fast: bool = dataclasses.field(default=False, metadata={"help": "go fast"})
    check: bool = dataclasses.field(default=True, metadata={"help": "skip the check"})


def _toy_parser(prefix: str = "", **options) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, _Toy, prefix, **options)
    return parser


def test_config_flags_follow_the_fields():
    parser = _toy_parser()
    args = parser.parse_args(["x", "--file", "a.txt", "b.txt", "--steps", "3", "--rate", "0.5", "--widths", "16",
                              "32", "--mode", "b", "--fast", "--no-check"])
    assert config_from_args(args, _Toy) == _Toy(files=["a.txt", "b.txt"], name="x", steps=3, rate=0.5,
                                                widths=[16, 32], mode="b", fast=True, check=False)
    assert config_from_args(parser.parse_args(["y"]), _Toy) == _Toy(name="y")
    assert config_from_args(parser.parse_args(["y"]), _Toy, steps=7).steps == 7  # keyword values win
    help_text = parser.format_help()
    assert "how many steps (default: 10)" in help_text and "base options:" in help_text
    with pytest.raises(SystemExit):
        parser.parse_args(["x", "--mode", "c"])
    with pytest.raises(SystemExit):
        parser.parse_args(["x", "--steps", "ten"])


def test_config_flags_with_a_prefix_and_without_defaults():
    parser = _toy_parser("toy-", exclude=("mode",), defaults=False)
    args = parser.parse_args(["x", "--toy-steps", "4", "--file", "f.txt"])  # a metadata flag takes no prefix
    assert given_values(args, _Toy, "toy-") == {"name": "x", "steps": 4, "files": ["f.txt"]}
    assert "--mode" not in parser.format_help() and "--toy-mode" not in parser.format_help()


# ---- --space takes a run folder ------------------------------------------------------------------------------------


@pytest.fixture
def run_folder(tmp_path):
    """A run folder as far as its space goes: config.json with the training options and the space."""
    space = SearchSpace.tiny()
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"train": {"teacher": "t"}, "space": space.to_json()}))
    (tmp_path / "space.json").write_text(json.dumps(space.to_json()))
    return folder


def test_space_accepts_a_run_folder_or_its_config(run_folder, capsys):
    outputs = []
    for given in (run_folder.parent / "space.json", run_folder, run_folder / "config.json"):
        assert main(["space", "--space", str(given)]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] == outputs[2] and '"widths": [\n    16,\n    32\n  ]' in outputs[0]
    arch = str(SearchSpace.tiny().sample(0))
    assert main(["arch", arch, "--space", str(run_folder)]) == 0
    assert f"params      {SearchSpace.tiny().params(arch):,}" in capsys.readouterr().out


def test_latency_profile_accepts_a_run_folder(run_folder, tmp_path, monkeypatch):
    import nasbert.latency.profile

    seen = []

    def fake_profile(space, *args, **kwargs):
        seen.append(space)
        raise UserError("stop here")

    monkeypatch.setattr(nasbert.latency.profile, "profile_space", fake_profile)
    assert main(["latency", "profile", "--space", str(run_folder), "--output", str(tmp_path / "lut.json")]) == 2
    assert seen == [SearchSpace.tiny()]


def test_a_folder_without_config_is_refused_in_one_sentence(tmp_path, capsys):
    assert main(["space", "--space", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "without config.json" in err


# ---- each `nasbert X` is also `python tools/X.py` -------------------------------------------------------------------


def test_every_command_has_its_tools_script():
    tools = Path(__file__).resolve().parents[1] / "tools"
    assert {p.stem for p in tools.glob("*.py")} == {name.replace("-", "_") for name in COMMANDS}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_tools_script_shows_the_command_help(name):
    script = Path(__file__).resolve().parents[1] / "tools" / f"{name.replace('-', '_')}.py"
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: nasbert {name}")


def test_export_flags_build_the_options_they_always_did():
    """The refinement flags keep their names (--train-file, --losses, --save-every, --resume, --refine-*)."""
    from nasbert.commands.export import export_options
    from nasbert.export.config import ExportOptions, RefineConfig

    parser = dict(_parsers(build_parser()))["nasbert export"]
    args = parser.parse_args(["runs/sn", "--arch", "A", "--output", "students/", "--init", "etd-impt",
                              "--refine-steps", "5", "--train-file", "c.txt", "--refine-batch-size", "8",
                              "--refine-lr", "0.001", "--refine-seq-len", "64", "--losses", "mlm", "kl",
                              "--save-every", "7", "--resume", "--seed", "3", "--no-measure", "--onnx"])
    assert export_options(args) == ExportOptions(
        init="etd-impt", onnx=True, measure=False, seed=3,
        refine=RefineConfig(train_files=["c.txt"], output="students.refine", steps=5, batch_size=8, seq_len=64,
                            lr=0.001, losses=["mlm", "kl"], save_every=7, seed=3, device="cpu", resume=True))
    args = parser.parse_args(["runs/sn", "--arch", "A", "--output", "s"])
    assert export_options(args) == ExportOptions()


@pytest.mark.parametrize("document", ["README.md", "docs/benchmarks.md"])
def test_every_command_line_in_the_docs_parses(document: str):
    """The README's and the benchmark log's `nasbert ...` lines use flags that exist (parsed, not run)."""
    lines = [line for line in bash_lines(document) if line.startswith("nasbert ")]
    assert len(lines) >= 5
    parser = build_parser()
    for line in lines:
        argv = shlex.split(line.replace("$TEACHER", "teacher"))[1:]
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{document} line does not parse: {line}")


def test_train_supernet_flags_win_over_the_config_file(tmp_path):
    """--config fills what no flag gives (a run's own config.json too); a flag given wins, even at its default."""
    from nasbert.commands.train_supernet import train_config

    parser = dict(_parsers(build_parser()))["nasbert train-supernet"]
    (tmp_path / "options.json").write_text(json.dumps({"teacher": "t", "lr": 0.01, "seq_len": 64, "shrink": True}))
    (tmp_path / "config.json").write_text(json.dumps({"train": {"teacher": "t", "lr": 0.01}, "space": {}}))
    config = train_config(parser.parse_args(["--config", str(tmp_path / "options.json"), "--lr", "0.0005",
                                             "--train-file", "a.txt"]))
    assert (config.teacher, config.lr, config.seq_len, config.shrink, config.train_files) == ("t", 0.0005, 64, True,
                                                                                             ["a.txt"])
    assert train_config(parser.parse_args(["--config", str(tmp_path / "config.json")])).lr == 0.01
    assert train_config(parser.parse_args([])) == TrainConfig()
