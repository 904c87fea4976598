"""bench/gpu_check.sh cannot rot before a GPU comes: its dry run's commands parse, its benchmarks take its flags."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nasbert.commands  # noqa: F401  (registers every subcommand)
from nasbert.commands.base import build_parser

ROOT = Path(__file__).resolve().parents[1]


def dry_run_commands(work: Path) -> list[list[str]]:
    result = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "WORK": str(work), "PYTHON": sys.executable, "TEACHER_STEPS": "2"},
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("gpu check done")
    return [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]


def test_every_dry_run_command_is_valid(tmp_path):
    commands = dry_run_commands(tmp_path / "work")
    stages = [c[c.index("nasbert") + 1:] for c in commands if "nasbert" in c and c[c.index("nasbert") - 1] == "-m"]
    assert {s[0] for s in stages} >= {"train-supernet", "latency", "search", "export", "finetune"}
    assert any("torch.distributed.run" in c for c in commands), "no torchrun stage"
    parser = build_parser()
    for argv in stages:
        assert "--device" not in argv or argv[argv.index("--device") + 1] == "cpu"  # the dry run is CPU-only
        parser.parse_args(argv)  # an unknown flag or bad value exits (SystemExit) and fails the test
    benches = [c for c in commands if len(c) > 1 and c[1].startswith("bench/")]
    assert {Path(c[1]).name for c in benches} == {"supernet_overhead.py", "student_speed.py", "train_throughput.py"}
    for command in benches:  # each flag is one the script declares (read from its source: no 6 s torch import)
        source = (ROOT / command[1]).read_text()
        for flag in (a for a in command[2:] if a.startswith("--")):
            assert re.search(rf"add_argument\(\"{flag}\"", source), f"{command[1]} has no {flag}"


def test_the_data_step_makes_a_teacher_corpus_and_task(tmp_path):
    commands = dry_run_commands(tmp_path / "work")
    (setup,) = [c for c in commands if c[1:2] == ["-c"]]
    exec(compile(setup[2], "bench/gpu_check.sh data step", "exec"), {})  # noqa: S102 - our own script's line
    work = tmp_path / "work"
    assert (work / "teacher/config.json").exists() and (work / "corpus.txt").stat().st_size > 0
    assert (work / "task/train.tsv").exists() and (work / "task/dev.tsv").exists()
