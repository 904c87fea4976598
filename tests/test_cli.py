"""The command line: user errors end with one sentence and exit code 2."""

from __future__ import annotations

import subprocess
import sys

from nasbert.cli import main

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
