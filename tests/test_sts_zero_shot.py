"""bench/sts_zero_shot.py: mean pooling over real tokens, the per-budget margins, the end-to-end table, refusals."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from tiny_assets import WORDS, make_tiny_teacher

BENCH = Path(__file__).resolve().parents[1] / "bench"
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def zero_shot_module(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import sts_zero_shot as module
    yield module
    sys.modules.pop("sts_zero_shot", None)


def test_a_sentence_embeds_the_same_alone_and_padded_beside_a_longer_one(zero_shot_module, tmp_path: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    folder = make_tiny_teacher(tmp_path / "t", mlm_head=False)
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    short, long = "the cat runs", "the big red dog sees a small blue bird in the old house"
    alone = zero_shot_module.sentence_embeddings(model, tokenizer, [short], 32)
    padded = zero_shot_module.sentence_embeddings(model, tokenizer, [short, long], 32)
    assert padded.shape == (2, 32)
    torch.testing.assert_close(padded[0], alone[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(padded[0], padded[1])


def test_the_table_scores_every_model_and_judges_the_pick_against_the_best_family(zero_shot_module, tmp_path: Path
                                                                                 ) -> None:
    work = tmp_path / "work"
    make_tiny_teacher(work / "students" / "width", mlm_head=False, seed=1)
    searched = make_tiny_teacher(work / "students" / "searched", mlm_head=False, seed=2)
    words = [w for w in WORDS if w.isalpha()]
    lines = ["sentence1\tsentence2\tscore"] + [f"the {words[i % len(words)]} runs\tthe {words[(i * 7) % len(words)]} "
                                               f"sleeps\t{(i * 13) % 6}" for i in range(24)]
    pairs = tmp_path / "dev.tsv"
    pairs.write_text("\n".join(lines) + "\n")
    models = [{"name": "teacher", "family": "teacher", "folder": "ignored", "latency_budget_ms": None},
              {"name": "s", "family": "searched", "folder": str(searched), "latency_budget_ms": 5.0,
               "measured_ms": 4.8, "mean": 0.5, "picked": True},
              {"name": "w", "family": "width", "folder": "students/width", "latency_budget_ms": 5.0,
               "measured_ms": 4.7, "mean": 0.4}]  # relative to the workdir, as compare.json names baselines
    (work / "compare").mkdir()
    (work / "compare" / "compare.json").write_text(json.dumps({"models": models}))
    output = tmp_path / "zero.md"
    zero_shot_module.main(["--compare", str(work / "compare"), "--pairs", str(pairs), "--output", str(output),
                           "--max-seq-len", "16"])

    text = output.read_text()
    assert "| s (picked) | searched | 5.000 ms | 4.800 |" in text and "| w | width | 5.000 ms | 4.700 |" in text
    assert "teacher" not in text.split("| --- |")[-1]  # the run's fine-tuned teacher is not scored
    figures = json.loads(output.with_suffix(".json").read_text())
    by_name = {m["name"]: m["zero_shot"]["pearson"] for m in figures["models"]}
    assert set(by_name) == {"s", "w"} and figures["count"] == 24
    (margin,) = figures["margins"]
    assert margin["baseline"] == "w" and margin["margin"] == pytest.approx(by_name["s"] - by_name["w"])


def test_a_folder_without_compare_json_or_a_moved_model_is_refused_with_exit_2(zero_shot_module, tmp_path: Path,
                                                                               capsys) -> None:
    pairs = tmp_path / "dev.tsv"
    pairs.write_text("sentence1\tsentence2\tscore\na\tb\t1.0\n")
    with pytest.raises(SystemExit) as stop:
        zero_shot_module.main(["--compare", str(tmp_path), "--pairs", str(pairs)])
    assert stop.value.code == 2 and "holds no compare.json" in capsys.readouterr().err

    (tmp_path / "compare.json").write_text(json.dumps({"models": [{"name": "x", "family": "width",
                                                                   "folder": "gone/x"}]}))
    with pytest.raises(SystemExit) as stop:
        zero_shot_module.main(["--compare", str(tmp_path), "--pairs", str(pairs)])
    assert stop.value.code == 2 and "gone/x" in capsys.readouterr().err
