"""bench/pareto.py's summary: the table and the acceptance verdict from a compare.json and the stage log."""
from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
from doc_commands import bash_lines

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture()
def pareto(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))  # pareto.py imports its sibling distillers.py
    import pareto as module
    yield module
    sys.modules.pop("pareto", None)


def _model(name: str, family: str, budget: float | None, ms: float, scores: list[float]) -> dict:
    return {"name": name, "family": family, "latency_budget_ms": budget, "measured_ms": ms, "scores": scores,
            "mean": sum(scores) / len(scores), "min": min(scores), "max": max(scores)}


def test_summary_judges_each_budget_and_names_tagged_infeasible_budgets(pareto, tmp_path: Path) -> None:
    models = [_model("teacher", "teacher", None, 40.0, [0.80, 0.81]),
              _model("searched-MFxM-etd-impt-0.5", "searched", 20.0, 19.5, [0.78, 0.79]),
              _model("width-20.0000ms", "width", 20.0, 19.0, [0.76, 0.77]),
              _model("uniform-20.0000ms", "uniform", 20.0, 21.0, [0.79, 0.80])]
    (tmp_path / "compare-sst2").mkdir()
    (tmp_path / "compare-sst2" / "compare.json").write_text(json.dumps({"metric": "accuracy", "models": models}))
    log = {"teacher_ms": 40.0, "infeasible": {"MFxM-0.125": "search found no student measuring within 5ms"}}
    args = argparse.Namespace(seeds=2, smoke=False, compare_name="compare", tasks=["sst2"])
    pareto.summary(tmp_path, args, log, {0.5: "20.0000ms", 0.125: "5.0000ms"})

    text = (tmp_path / "pareto.md").read_text()
    assert "- MFxM 1/8: search found no student measuring within 5ms" in text
    assert "| uniform | uniform-20.0000ms | 21.000 (1.05; 1.05) | 0.7950 [0.7900, 0.8000] | no; no |" in text
    # the machine slowed by 5 % since the budgets were set: the teacher beside them reads 42 ms, and the student
    # at 20.5 ms is over its 20 ms budget but within 10 % under half the teacher timed with it
    models[0]["measured_ms"], models[1]["measured_ms"] = 42.0, 20.5
    (tmp_path / "compare-sst2" / "compare.json").write_text(json.dumps({"metric": "accuracy", "models": models}))
    pareto.summary(tmp_path, args, log, {0.5: "20.0000ms", 0.125: "5.0000ms"})
    assert "| searched-MFxM-etd-impt-0.5 | 20.500 (1.02; 0.98) | 0.7850 [0.7800, 0.7900] | no; yes |" in (
        tmp_path / "pareto.md").read_text()
    verdicts = json.loads((tmp_path / "pareto.json").read_text())["verdicts"]
    # two seeds a side, 0.005 apart: Welch's half-width t(0.975, 2 df) * 0.00707 = 0.0304
    assert "BELOW the best family (margin -0.0100 [-0.0404, +0.0204], 95% interval over seeds)" in verdicts[
        "sst2/20.0000"]


def test_summary_shows_stalled_seeds_and_the_zero_shot_margins(pareto, tmp_path: Path) -> None:
    models = [_model("teacher", "teacher", None, 40.0, [0.85, 0.84]),
              _model("searched-MFxM-etd-impt-0.25", "searched", 10.0, 9.5, [0.40, 0.38]) | {"stalled": 1},
              _model("width-10.0000ms", "width", 10.0, 9.4, [0.18, 0.17]) | {"stalled": 2}]
    (tmp_path / "compare-stsb").mkdir()
    (tmp_path / "compare-stsb" / "compare.json").write_text(json.dumps({"metric": "pearson", "models": models}))
    (tmp_path / "zero-shot-compare-stsb.json").write_text(json.dumps({"margins": [
        {"budget_ms": 10.0, "searched": "searched-MFxM-etd-impt-0.25", "baseline": "width-10.0000ms",
         "margin": -0.1376}]}))
    args = argparse.Namespace(seeds=2, smoke=False, compare_name="compare", tasks=["stsb"])
    pareto.summary(tmp_path, args, {"teacher_ms": 40.0}, {0.25: "10.0000ms"})

    text = (tmp_path / "pareto.md").read_text()
    assert "| width-10.0000ms | 9.400 (0.94; 0.94) | 0.1750 [0.1700, 0.1800] (stalled: 2 of 2) | yes; yes |" in text
    assert "stalled fine-tunes: searched 1 of 2, family 2 of 2 (the margin ranks failed fine-tunes)" in text
    assert ("- stsb/10.0000: searched searched-MFxM-etd-impt-0.25 vs best family width-10.0000ms: margin -0.1376"
            in text)


def test_merge_compare_joins_runs_of_one_setting_and_refuses_another(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import merge_compare

    conditions = {"device": "cpu", "threads": 2, "batch_size": 1, "seq_len": 128, "date": "d1"}

    def run(name: str, models: list[dict], metric: str = "accuracy", date: str = "d1") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "compare.json").write_text(json.dumps(
            {"metric": metric, "recipe": "finetune", "seeds": 2, "latency_note": f"{name} timing",
             "latency_conditions": {**conditions, "date": date}, "models": models}))
        return folder

    first = run("halves", [_model("teacher", "teacher", None, 40.0, [0.80, 0.81]),
                           _model("width-20ms", "width", 20.0, 19.0, [0.76, 0.77])])
    later = run("eighths", [_model("teacher", "teacher", None, 41.0, [0.70, 0.71]),
                            _model("width-5ms", "width", 5.0, 4.6, [0.72, 0.73]),
                            _model("searched-5ms", "searched", 5.0, 4.7, [0.74, 0.75])], date="d2")
    payload = merge_compare.merged([first, later])
    assert [m["name"] for m in payload["models"]] == ["teacher", "width-20ms", "width-5ms", "searched-5ms"]
    [margin] = payload["margins"]  # the later run's budget is judged too
    assert (margin["searched"], margin["baseline"]) == ("searched-5ms", "width-5ms")
    assert margin["margin"] == pytest.approx(0.02)
    assert payload["models"][0]["measured_ms"] == 40.0  # the teacher of the first run
    assert payload["latency_note"] == "halves: halves timing; eighths: eighths timing"
    other = run("pearson", [_model("width-5ms", "width", 5.0, 4.6, [0.3, 0.4])], metric="pearson")
    with pytest.raises(SystemExit, match="another metric"):
        merge_compare.merged([first, other])
    sys.modules.pop("merge_compare", None)


def test_rerank_report_leaves_out_the_refinement_proxy_when_a_leader_was_not_refined(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    import rerank

    def leader(rank: int, tail: float | None, task: float) -> dict:
        return {"fraction": 0.5, "budget": "20ms", "rank": rank, "arch": f"arch{rank}", "search_loss": 0.1 * rank,
                "final_hidden_mse": 0.2 * rank, "mlm_ce": 3.0 - rank, "refine_tail_loss": tail,
                "held_out_task_error": 1.0 - task + 0.001 * rank, "side_by_side_ms": 19.0, "task_mean": task,
                "task_min": task - 0.01, "task_max": task + 0.01}

    candidates = [leader(1, 1.5, 0.78), leader(2, None, 0.79), leader(3, 1.2, 0.77)]
    others = [{"name": "width", "measured_ms": 19.0, "final_hidden_mse": 0.3, "mlm_ce": 2.5, "task_mean": 0.77,
               "held_out_task_error": 0.2},
              {"name": "uniform", "measured_ms": 18.0, "final_hidden_mse": 0.4, "mlm_ce": 2.6, "task_mean": 0.76,
               "held_out_task_error": 0.3}]
    rerank.report(tmp_path, candidates, others, "sst2")
    result = json.loads((tmp_path / "rerank.json").read_text())
    assert set(result["picks"]["20ms"]) == {"search_loss", "final_hidden_mse", "mlm_ce", "held_out_task_error"}
    assert result["picks"]["20ms"]["mlm_ce"] == 3  # the lowest MLM CE
    assert result["picks"]["20ms"]["held_out_task_error"] == 2  # the best held-out task score
    row = "| 20ms | 2 | `arch2` | 0.2000 | 0.4000 | 1.000 | - | 0.2120 | 19.00 |"
    assert row in (tmp_path / "rerank.md").read_text()
    sys.modules.pop("rerank", None)


def test_leaders_are_the_searchs_first_ranks_within_the_budget_and_name_their_folders(pareto, tmp_path: Path):
    top_k = [{"arch": "a", "predicted_latency_ms": 9.0, "measured_latency_ms": 9.5},
             {"arch": "b", "predicted_latency_ms": 9.0, "measured_latency_ms": 10.5},  # measured over: skipped
             {"arch": "c", "predicted_latency_ms": 9.8},  # not timed: its prediction decides
             {"arch": "d", "predicted_latency_ms": 9.9}]
    search = tmp_path / "search.json"
    search.write_text(json.dumps({"budgets": [{"latency_budget_ms": 10.0, "top_k": top_k}]}))
    assert [(c["arch"], c["rank"]) for c in pareto.leaders(search, 2)] == [("a", 1), ("c", 3)]
    folders = [pareto.searched_folder(tmp_path, "MFxM-", "etd-impt:extract-only", 0.25, rank) for rank in (1, 3)]
    assert [f.name for f in folders] == ["searched-MFxM-etd-impt-extract-only-0.25",
                                         "searched-MFxM-etd-impt-extract-only-0.25-r3"]
    assert {pareto.variant_of(f.name) for f in folders} == {"MFxM-etd-impt-extract-only"}  # one row variant


def test_the_verdict_judges_the_held_out_pick_not_the_dev_best_leader(pareto) -> None:
    rows = [_model("searched-MFxM-etd-impt-0.5", "searched", 20.0, 19.5, [0.78, 0.79]),
            _model("searched-MFxM-etd-impt-0.5-r2", "searched", 20.0, 19.0, [0.80, 0.81]),  # dev-best, not picked
            _model("width-20.0000ms", "width", 20.0, 19.0, [0.76, 0.77])]
    rows[0]["picked"] = True
    text = pareto.verdict(rows)
    assert text == ("searched (MFxM-etd-impt, picked by held-out score among 2) 0.7850 vs best family width 0.7650: "
                    "at or above every family (margin +0.0200 [-0.0104, +0.0504], 95% interval over seeds)")
    del rows[0]["picked"]  # without a pick every searched row is judged, the best first
    assert pareto.verdict(rows).startswith("searched (MFxM-etd-impt) 0.8050")


def _refused(capsys: pytest.CaptureFixture, call, *args) -> str:
    """The one sentence (stderr) a refusal by the benchmark ends with; its exit code is 2."""
    with pytest.raises(SystemExit) as stop:
        call(*args)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_a_task_can_have_its_own_fine_tune_length(pareto, capsys) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task-rows", nargs="+", type=pareto.task_override)
    parser.add_argument("--task-epochs", nargs="+", type=pareto.task_override)
    parser.add_argument("--task-lr", nargs="+", type=pareto.task_override)
    args = parser.parse_args(["--task-rows", "stsb=all", "--task-epochs", "stsb=3", "--task-lr", "stsb=1e-4"])
    args.finetune_train_samples, args.finetune_epochs = 2000, 2.0
    # every row (no --max-train-samples); the task's lr last, so it wins over the common --lr before it
    assert pareto.task_finetune(args, "stsb") == ["--epochs", "3", "--lr", "1e-4"]
    assert pareto.task_finetune(args, "sst2") == ["--max-train-samples", "2000", "--epochs", "2.0"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--task-rows", "all"])  # no TASK= (a name of no task: task_folders, below)
    args.held_out_rows = 0
    args.task_lr = [("stsb", "fast")]
    assert "positive learning rates" in _refused(capsys, pareto.task_finetune, args, "stsb")
    args.task_lr = [("stsb", "1e-4,3e-4")]  # a grid: each student at its best lr by held-out score
    assert "give --held-out-rows N too" in _refused(capsys, pareto.task_finetune, args, "stsb")
    args.held_out_rows = 500
    # stsb=all leaves none out
    assert "--task-rows under the train set's size" in _refused(capsys, pareto.task_finetune, args, "stsb")
    args.task_rows = [("stsb", "5249")]
    assert pareto.task_finetune(args, "stsb") == ["--max-train-samples", "5249", "--epochs", "3", "--lr-grid",
                                                  "1e-4", "3e-4"]
    args.task_rows = [("sst2", "-5")]
    assert "positive number of rows" in _refused(capsys, pareto.task_finetune, args, "sst2")


def test_too_few_rows_left_for_the_held_out_pick_stop_the_benchmark_before_any_stage(pareto, tmp_path,
                                                                                      capsys) -> None:
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"row {i}\t{i % 2}\n" for i in range(40)))
    args = argparse.Namespace(seeds=3, held_out_rows=11)
    sentence = _refused(capsys, pareto.check_held_out, train, ["--max-train-samples", "30", "--epochs", "2"], args)
    assert re.search(r"--held-out-rows 11: a draw of --max-train-samples 30 of the 40 rows .* leaves 10 out; ask for "
                     r"at most 10", sentence)
    args.held_out_rows = 10
    pareto.check_held_out(train, ["--max-train-samples", "30", "--epochs", "2"], args)  # each seed leaves 10 out


def _pareto_lines(document: str) -> list[list[str]]:
    """Every `python bench/pareto.py ...` line the document shows, `$F` expanded from the latest `F="..."` before
    it (later runs say "$F as above")."""

    lines, common = [], "$F"
    for line in bash_lines(document):
        if line.startswith('F="') and line.endswith('"'):
            common = line[3:-1]
        elif line.startswith("python bench/pareto.py"):
            lines.append(shlex.split(line.replace("$F", common))[2:])
    return lines


@pytest.mark.parametrize("document", ["README.md", "docs/benchmarks.md"])
def test_every_pareto_command_in_the_docs_parses(pareto, document: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented `bench/pareto.py` commands use flags that exist, and each task's fine-tuning flags pass the
    checks main() makes before any stage runs (an lr grid needs --held-out-rows, ...); the documented task folders
    are taken to hold their files."""
    monkeypatch.setattr(pareto, "task_file", lambda folder, stem: Path(folder) / f"{stem}.tsv")
    lines = _pareto_lines(document)
    assert len(lines) >= 2
    for argv in lines:
        assert "$F" not in argv, f"{document}: $F used without F=... in its block"
        try:
            args = pareto.build_parser().parse_args(argv)
            pareto.task_folders(args, {task: Path("unused") for task in pareto.TASKS})
            for task in args.tasks:
                pareto.task_finetune(args, task)
        except SystemExit:
            pytest.fail(f"{document}: `python bench/pareto.py {' '.join(argv)}` is refused")


def test_a_task_of_your_own_is_compared_by_its_folder_and_flags(pareto, tmp_path: Path, capsys) -> None:
    """--task NAME=DIR adds a task (its train and dev files, TSV / CSV / JSON lines), the default --tasks becomes
    the given ones, --task-flags gives its compare flags; a wrong name or a folder without both files stops in one
    sentence before any stage."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train.csv").write_text("text,label\na,0\n")
    (mine / "dev.tsv").write_text("text\tlabel\na\t0\n")
    builtin = {task: tmp_path / task for task in pareto.TASKS}
    args = pareto.build_parser().parse_args(["--task", f"mine={mine}", "--task-flags",
                                             "mine=--label-column y --text-columns a b", "--task-rows", "mine=500"])
    tasks = pareto.task_folders(args, builtin)
    assert args.tasks == ["mine"] and list(tasks) == ["mine"]
    assert tasks["mine"] == {"train": mine / "train.csv", "dev": mine / "dev.tsv",
                             "flags": ["--label-column", "y", "--text-columns", "a", "b"]}
    assert pareto.task_finetune(args, "mine")[:2] == ["--max-train-samples", "500"]
    args = pareto.build_parser().parse_args(["--task", f"mine={mine}", "--tasks", "sst2", "mine"])
    assert list(pareto.task_folders(args, builtin)) == ["sst2", "mine"]

    (mine / "dev.tsv").unlink()
    refusals = {"no dev.tsv (or .csv, .jsonl) there": ["--task", f"mine={mine}"],
                "the name sst2 is taken": ["--task", f"sst2={tmp_path}"],
                "--tasks nope: no such task; the tasks are sst2, stsb": ["--tasks", "nope"],
                "--task-lr other: no such task": ["--task-lr", "other=1e-4"]}
    for sentence, argv in refusals.items():
        assert sentence in _refused(capsys, pareto.task_folders, pareto.build_parser().parse_args(argv), builtin)


def test_the_benchmark_refuses_a_task_of_no_task_with_exit_2_before_any_stage(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run([sys.executable, str(BENCH / "pareto.py"), "--teacher", str(tmp_path / "t"), "--workdir",
                           str(tmp_path / "w"), "--tasks", "nope"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: --tasks nope: no such task; the tasks are sst2, stsb "
                                                "(--task NAME=DIR adds one)"]
    assert not (tmp_path / "w").exists()  # nothing written
