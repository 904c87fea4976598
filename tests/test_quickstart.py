"""`nasbert quickstart --fast`: the whole pipeline end to end, as CI runs it (the full form is timed in the README)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nasbert.cli import main
from nasbert.errors import UserError
from nasbert.latency.machine import ALLOW_BUSY_ENV
from nasbert.modeling_nasbert import NasbertForMaskedLM
from nasbert.quickstart import run as quickstart_run
from nasbert.quickstart.run import toy_timings_kept


def test_quickstart_fast_runs_the_whole_pipeline(tmp_path, capsys):
    assert main(["quickstart", "--output", str(tmp_path / "qs"), "--fast"]) == 0
    out = capsys.readouterr().out
    root = tmp_path / "qs"
    search = json.loads((root / "search.json").read_text())
    assert len(search["budgets"]) == 2
    students = sorted(p for p in (root / "students").iterdir() if p.is_dir())
    assert len(students) == 2
    for folder, budget in zip(sorted(students, key=lambda p: float(p.name[:-2])),
                              sorted(search["budgets"], key=lambda b: b["latency_budget_ms"])):
        card = (folder / "README.md").read_text()
        assert budget["winner"]["arch"] in card
        winner = budget["winner"]  # measured within its budget (search may loosen a table that over-predicts)
        assert (winner.get("measured_latency_ms") or winner["predicted_latency_ms"]) <= budget["latency_budget_ms"]
        NasbertForMaskedLM.from_pretrained(folder)
    assert "accuracy" in json.loads((root / "finetuned/eval_results.json").read_text()).__repr__()
    assert "nasbert finetune" in out and "quickstart finished" in out
    # A second run finds every stage done and only reports.
    assert main(["quickstart", "--output", str(root), "--fast"]) == 0
    assert "== train the supernet" not in capsys.readouterr().out


def test_quickstart_keeps_its_toy_timings_unless_the_user_said_otherwise(monkeypatch, capsys):
    monkeypatch.delenv(ALLOW_BUSY_ENV, raising=False)
    with toy_timings_kept():
        assert os.environ[ALLOW_BUSY_ENV] == "1"
    assert ALLOW_BUSY_ENV not in os.environ and "timings are kept with a warning" in capsys.readouterr().out
    monkeypatch.setenv(ALLOW_BUSY_ENV, "0")  # the user wants refusals, even here
    with toy_timings_kept():
        assert os.environ[ALLOW_BUSY_ENV] == "0"
    assert os.environ[ALLOW_BUSY_ENV] == "0" and capsys.readouterr().out == ""


def _fake_nasbert(lut: Path, search: Path, search_codes: list[int], calls: list[str]):
    """`nasbert ARGS` standing in for the profile and search commands: it records which ran and writes their
    outputs; the search exits with the next of `search_codes`, writing its output only on 0."""
    def run(args: list[str]) -> int:
        calls.append(args[0])
        if args[0] == "latency":
            lut.write_text("{}")
            return 0
        code = search_codes.pop(0)
        if code == 0:
            search.write_text("{}")
        return code
    return run


def test_quickstart_searches_again_on_a_fresh_profile_when_no_student_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(quickstart_run, "_two_budgets", lambda run, lut: ["1.0ms", "2.0ms"])
    lut, search, calls = tmp_path / "lut.json", tmp_path / "search.json", []
    pick = {k: v[1] for k, v in quickstart_run.SCALE.items()}
    quickstart_run.profile_and_search(_fake_nasbert(lut, search, [2, 0], calls), tmp_path, lut, search, pick)
    assert calls == ["latency", "search", "latency", "search"] and search.exists()
    assert "profiling this machine again" in capsys.readouterr().out


def test_quickstart_gives_up_after_its_tries(tmp_path, monkeypatch):
    monkeypatch.setattr(quickstart_run, "_two_budgets", lambda run, lut: ["1.0ms", "2.0ms"])
    lut, search, calls = tmp_path / "lut.json", tmp_path / "search.json", []
    pick = {k: v[1] for k, v in quickstart_run.SCALE.items()}
    with pytest.raises(UserError, match="search at two latency budgets"):
        quickstart_run.profile_and_search(_fake_nasbert(lut, search, [2, 2], calls), tmp_path, lut, search, pick,
                                          tries=2)
    assert calls == ["latency", "search", "latency", "search"] and not search.exists()
