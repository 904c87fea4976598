"""`nasbert distill` and `nasbert layer-map-search`: every recipe end to end on tiny models, the losses against
hand computations, SKD's draws, layer maps, the GA on a planted optimum, resume, bad input."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tiny_assets import WORDS, make_corpus, write_vocab
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

from nasbert import NasbertConfig, NasbertModel
from nasbert.cli import main
from nasbert.common.losses import TASK_LOSSES, TaskContext
from nasbert.errors import UserError
from nasbert.finetune.distill.layer_map import format_layer_map, named_layer_map, parse_layer_map, resolve_layer_map
from nasbert.finetune.distill.recipes import RECIPES
from nasbert.finetune.distill.search import genetic_search
from nasbert.finetune.distill.skd import rank_probabilities, teacher_sequence
from nasbert.registration import save_student

FILLER = [w for w in WORDS if w not in ("happy", "sad")]
FAST = ["--batch-size", "16", "--lr", "1e-3", "--report-to", "none", "--max-train-samples", "64"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_tsv(path: Path, rows: int, seed: int, labels=("0", "1")) -> Path:
    """SST-2 layout; the second label iff the sentence holds "happy" (the first: "sad"), on 3 rows in 4.

    The labels are skewed so that a few steps can lower a task loss (a bias suffices), and the rule is there
    to learn beyond it.
    """
    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    for i in range(rows):
        positive = i % 4 != 0
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        words.insert(rng.randrange(len(words) + 1), "happy" if positive else "sad")
        lines.append(f"{' '.join(words)}\t{labels[positive]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def bert_config(tokenizer, layers: int, **extra) -> BertConfig:
    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64, **extra)


def save_classifier(folder: Path, tokenizer, layers: int, seed: int, **extra) -> Path:
    """A BERT with a 2-label head, as `nasbert finetune` leaves a teacher (the head's weights are random)."""
    torch.manual_seed(seed)
    BertForSequenceClassification(bert_config(tokenizer, layers, num_labels=2, **extra)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distill")
    (root / "tokenizer").mkdir()
    tokenizer = BertTokenizer(vocab=str(write_vocab(root / "tokenizer" / "vocab.txt")))
    torch.manual_seed(0)
    student = save_student(NasbertModel(NasbertConfig(
        arch="32:M,F/16:S3,F", vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, head_dim=8,
        max_position_embeddings=64)), root / "student", tokenizer)  # block 2 holds no attention
    torch.manual_seed(0)
    BertModel(bert_config(tokenizer, 4)).save_pretrained(root / "pretrained")
    tokenizer.save_pretrained(root / "pretrained")
    torch.manual_seed(1)
    BertModel(bert_config(tokenizer, 2)).save_pretrained(root / "bert-student")
    tokenizer.save_pretrained(root / "bert-student")
    files = {"train": write_tsv(root / "train.tsv", 256, 0), "dev": write_tsv(root / "dev.tsv", 32, 1),
             "transfer": write_tsv(root / "transfer.tsv", 80, 2), "general": make_corpus(root / "general.txt", 64)}
    teacher = root / "teacher"  # the pre-trained encoder, fine-tuned on the task for real
    assert main(["finetune", str(root / "pretrained"), "--train-file", str(files["train"]), "--validation-file",
                 str(files["dev"]), "--output", str(teacher), "--epochs", "4", "--batch-size", "16", "--lr", "2e-3",
                 "--report-to", "none"]) == 0
    return {"root": root, "student": student, "pretrained": root / "pretrained", "teacher": teacher,
            "bert-student": root / "bert-student", "member": save_classifier(root / "member", tokenizer, 2, seed=2),
            **files}


def distill(assets, output: Path, *flags: str, student: str = "student") -> int:
    return main(["distill", str(assets[student]), "--teacher", str(assets["teacher"]), "--train-file",
                 str(assets["train"]), "--validation-file", str(assets["dev"]), "--output", str(output), *FAST, *flags])


RECIPE_FLAGS = {
    "kd": ["--epochs", "2"],
    "pkd-skip": ["--epochs", "2"],
    "pkd-last": ["--epochs", "2"],
    "tinybert": ["--epochs", "2", "--intermediate-epochs", "3"],
    "skd": ["--epochs", "2", "--skd-sampling", "student-rank", "--skd-probe-steps", "2"],
    "ernie-tiny": ["--epochs", "2", "--intermediate-epochs", "2"],
    "xtremedistil": ["--epochs", "2", "--intermediate-epochs", "2", "--unfreeze-epochs", "1"],
}
_RUNS: dict[str, Path] = {}


def recipe_output(assets, name: str) -> Path:
    """The output folder of `name` run once with RECIPE_FLAGS (the team, corpus and transfer file added)."""
    if name not in _RUNS:
        flags = ["--recipe", name, *RECIPE_FLAGS[name]]
        flags += {"skd": ["--team", str(assets["member"])],
                  "ernie-tiny": ["--pretrained-teacher", str(assets["pretrained"]), "--general-train-file",
                                 str(assets["general"])],
                  "xtremedistil": ["--transfer-train-file", str(assets["transfer"])]}.get(name, [])
        output = assets["root"] / f"out-{name}"
        assert distill(assets, output, *flags) == 0
        _RUNS[name] = output
    return _RUNS[name]


@pytest.mark.parametrize("name", list(RECIPES))
def test_each_recipe_runs_lowers_its_own_loss_and_writes_the_finetune_files(assets, name, capsys):
    output = recipe_output(assets, name)
    out = capsys.readouterr().out
    assert f"with {name} from" in out and "wrote" in out
    names = {p.name for p in output.iterdir()}
    assert {"config.json", "model.safetensors", "modeling_nasbert.py", "configuration_nasbert.py", "tokenizer.json",
            "eval_results.json", "train_results.json", "distill_args.json", "stages.json"} <= names
    assert not {"state", "progress.json", "best.safetensors"} & names and not Path(f"{output}.partial").exists()
    history = json.loads((output / "stages.json").read_text())
    settings = json.loads((output / "distill_args.json").read_text())
    assert [e["stage"] for e in history] == [s["name"] for s in settings["stages"]]
    groups = []  # consecutive stages with one objective (xtremedistil's unfreezing steps) form one group
    for entry in history:
        if groups and (groups[-1][-1]["losses"], groups[-1][-1]["data"]) == (entry["losses"], entry["data"]):
            groups[-1].append(entry)
        else:
            groups.append([entry])
    for group in groups:  # each objective was lowered, measured on a fixed batch with dropout off
        assert all(e["steps"] > 0 for e in group)
        assert group[-1]["probe_after"]["total"] < group[0]["probe_before"]["total"], group
    assert set(history[-1]["eval"]) >= {"eval_accuracy", "eval_loss"}
    config = json.loads((output / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"} and "distill_projections" not in str(config)
    if RECIPES[name].layer_map:
        assert settings["layer_map"] and settings["layer_map"] == format_layer_map(parse_layer_map(
            settings["layer_map"]))


def test_recipes_read_the_layers_they_say(assets):
    settings = {n: json.loads((recipe_output(assets, n) / "distill_args.json").read_text())
                for n in ("pkd-skip", "pkd-last", "tinybert", "xtremedistil")}
    # a 2-block student, a 4-layer teacher: skip -> t1; last -> t2; uniform -> t1, t3; top -> t2, t3
    assert [settings[n]["layer_map"] for n in settings] == ["s0:t1", "s0:t2", "s0:t1,s1:t3", "s0:t2,s1:t3"]
    assert any("s1 hold no attention layer" in note for note in settings["tinybert"]["notes"])
    terms = json.loads((recipe_output(assets, "tinybert") / "stages.json").read_text())[0]["terms"]
    assert set(terms) == {"attention_mse", "hidden_mse", "embedding_mse"} and all(v > 0 for v in terms.values())
    stages = [s["name"] for s in settings["xtremedistil"]["stages"]]
    assert stages[0] == "transfer-representation" and stages[-1] == "target" and len(stages) == 1 + 4 + 4 + 1


def test_kd_recipe_gives_the_numbers_of_finetune_teacher(assets, tmp_path):
    flags = ["--epochs", "2", "--kd-alpha", "0.5", "--kd-temperature", "2", "--seed", "3"]
    assert main(["finetune", str(assets["student"]), "--teacher", str(assets["teacher"]), "--train-file",
                 str(assets["train"]), "--validation-file", str(assets["dev"]), "--output", str(tmp_path / "ft"),
                 *FAST, *flags]) == 0
    assert distill(assets, tmp_path / "kd", "--recipe", "kd", *flags) == 0
    finetuned, distilled = (json.loads((tmp_path / f / "eval_results.json").read_text()) for f in ("ft", "kd"))
    for key in ("eval_loss", "eval_accuracy"):
        assert distilled[key] == pytest.approx(finetuned[key], abs=1e-6), key
    a, b = (json.loads((tmp_path / f / "train_results.json").read_text()) for f in ("ft", "kd"))
    assert b["train_loss_kd"] == pytest.approx(a["train_loss"], rel=1e-6)


def test_a_plain_bert_student_maps_its_layers(assets, tmp_path):
    output = tmp_path / "bert-tinybert"
    assert distill(assets, output, "--recipe", "tinybert", "--max-steps", "4", student="bert-student") == 0
    settings = json.loads((output / "distill_args.json").read_text())
    assert settings["layer_map"] == "s0:t1,s1:t3" and not [n for n in settings["notes"] if "attention" in n]
    assert json.loads((output / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]


def test_skd_draws_follow_the_seed_and_the_asked_distribution(assets):
    from scipy.stats import chisquare

    probabilities = [0.5, 0.3, 0.2]
    draws = teacher_sequence(probabilities, seed=7, steps=1000)
    assert draws == teacher_sequence(probabilities, seed=7, steps=1000)
    assert draws != teacher_sequence(probabilities, seed=8, steps=1000)
    counts = [draws.count(k) for k in range(3)]
    assert chisquare(counts, [1000 * p for p in probabilities]).pvalue > 0.01
    assert rank_probabilities([0.9, 0.5, 0.7]) == pytest.approx([3 / 6, 1 / 6, 2 / 6])
    output = recipe_output(assets, "skd")  # student-rank: the team's probabilities came from probe runs
    record = json.loads((output / "skd_teachers.json").read_text())
    assert record["sampling"] == "student-rank" and len(record["probabilities"]) == 2
    assert record["sequence"] == teacher_sequence(record["probabilities"], record["seed"], len(record["sequence"]))
    assert json.loads((output / "distill_args.json").read_text())["team_basis"]["scores"]


def test_pkd_loss_is_the_hand_computation_on_fixed_tensors():
    g = torch.Generator().manual_seed(0)
    student = {"states": {0: torch.randn(2, 3, 4, generator=g), 1: torch.randn(2, 3, 4, generator=g)}}
    teacher = {"states": {1: torch.randn(2, 3, 4, generator=g), 3: torch.randn(2, 3, 4, generator=g)}}
    pairs = [(0, 1), (1, 3)]
    expected, count = 0.0, 0
    for s, t in pairs:
        for b in range(2):
            a, c = student["states"][s][b, 0].tolist(), teacher["states"][t][b, 0].tolist()
            norm_a, norm_c = sum(x * x for x in a) ** 0.5, sum(x * x for x in c) ** 0.5
            expected += sum((x / norm_a - y / norm_c) ** 2 for x, y in zip(a, c))
            count += len(a)
    loss = TASK_LOSSES["pkd"](student, teacher, TaskContext(pairs=pairs))
    assert float(loss) == pytest.approx(expected / count, rel=1e-6)


def test_layer_maps_round_trip_and_bad_maps_are_refused():
    assert named_layer_map("skip", 6, 12) == [(0, 1), (1, 3), (2, 5), (3, 7), (4, 9)]  # PKD-Skip, 0-based
    assert named_layer_map("last", 6, 12) == [(0, 6), (1, 7), (2, 8), (3, 9), (4, 10)]  # PKD-Last
    assert named_layer_map("uniform", 4, 12) == [(0, 2), (1, 5), (2, 8), (3, 11)]  # TinyBERT g(m) = 3m
    assert named_layer_map("top", 3, 12) == [(0, 9), (1, 10), (2, 11)]
    for text in ("s0:t2,s1:t5", "s0:t0", "s2:t7,s0:t1,s1:t1"):
        pairs = parse_layer_map(text)
        assert parse_layer_map(format_layer_map(pairs)) == pairs and format_layer_map(pairs) == text
    assert parse_layer_map("0:2, 1:5") == [(0, 2), (1, 5)]
    bad = {"s0:t12": "teacher layer t12 is out of range", "s6:t0": "student layer s6 is out of range",
           "s0:t1,s0:t2": "maps student layer s0 twice", "s0-t1": "is not a pair",
           ",".join(f"s{i}:t{i}" for i in range(7)): "has 7 pairs but the student has only 6"}
    for text, message in bad.items():
        with pytest.raises(UserError, match=message):
            resolve_layer_map(text, 6, 12)
    with pytest.raises(UserError, match="at least as deep"):
        resolve_layer_map("uniform", 6, 4)


def test_genetic_search_finds_a_planted_map_and_resumes_exactly(tmp_path):
    planted = (4, 1, 5)

    def fitness(layer_map: str) -> float:  # the closer each gene to the planted one, the better
        return -sum(abs(t - p) for (_, t), p in zip(parse_layer_map(layer_map), planted))

    options = dict(population=8, generations=12, seed=0)
    result = genetic_search(fitness, 3, 6, **options)
    assert result["best"] == {"layer_map": "s0:t4,s1:t1,s2:t5", "score": 0.0}
    assert len(result["evaluated"]) < 6**3  # found without scoring every map
    state = tmp_path / "state.json"
    genetic_search(fitness, 3, 6, **{**options, "generations": 5}, state_file=state)
    resumed = genetic_search(fitness, 3, 6, **options, state_file=state)
    assert resumed["trajectory"] == result["trajectory"] and resumed["best"] == result["best"]


def test_layer_map_search_command_writes_a_map_distill_uses(assets, tmp_path, capsys):
    output = tmp_path / "map"
    args = ["layer-map-search", str(assets["student"]), "--teacher", str(assets["teacher"]), "--train-file",
            str(assets["train"]), "--validation-file", str(assets["dev"]), "--output", str(output),
            "--population", "3", "--generations", "2", "--proxy-steps", "2", "--proxy-train-samples", "32",
            "--proxy-eval-samples", "32", "--batch-size", "16"]
    assert main(args) == 0
    result = json.loads((output / "layer_map_search.json").read_text())
    assert len(result["trajectory"]) == 2 and (output / "trajectory.png").stat().st_size > 0
    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # a finished search is not silently redone
    assert main([*args, "--generations", "3", "--resume"]) == 0
    assert len(json.loads((output / "layer_map_search.json").read_text())["trajectory"]) == 3
    best = json.loads((output / "layer_map_search.json").read_text())["best"]["layer_map"]
    assert distill(assets, tmp_path / "pkd", "--recipe", "pkd-skip", "--layer-map", str(output), "--max-steps",
                   "2") == 0
    assert json.loads((tmp_path / "pkd" / "distill_args.json").read_text())["layer_map"] == best


def test_ernie_tiny_resumes_after_a_stage_and_ends_where_an_uninterrupted_run_does(assets, tmp_path, capsys):
    flags = ["--recipe", "ernie-tiny", *RECIPE_FLAGS["ernie-tiny"], "--pretrained-teacher", str(assets["pretrained"]),
             "--general-train-file", str(assets["general"])]
    output = tmp_path / "ernie"
    assert distill(assets, output, *flags, "--until-stage", "general-enhanced") == 0
    assert "stopped after stage general-enhanced" in capsys.readouterr().out
    assert not output.exists() and (tmp_path / "ernie.partial" / "progress.json").is_file()
    assert distill(assets, output, *flags) == 2 and "--resume" in capsys.readouterr().err
    assert distill(assets, output, *flags, "--resume", "--lr", "5e-4") == 2  # other options: refused
    assert distill(assets, output, *flags, "--resume") == 0
    assert "resuming after general-enhanced" in capsys.readouterr().out
    reference = recipe_output(assets, "ernie-tiny")
    resumed, uninterrupted = (json.loads((f / "stages.json").read_text()) for f in (output, reference))
    assert [e["probe_after"] for e in resumed] == [e["probe_after"] for e in uninterrupted]
    assert (json.loads((output / "eval_results.json").read_text())["eval_loss"]
            == json.loads((reference / "eval_results.json").read_text())["eval_loss"])


def test_bad_input_exits_2_with_one_sentence(assets, tmp_path, capsys):
    root = assets["root"]
    other_vocab = tmp_path / "vocab.txt"
    other_vocab.write_text((root / "tokenizer" / "vocab.txt").read_text() + "zebra\n")
    other = save_classifier(tmp_path / "other-vocab", BertTokenizer(vocab=str(other_vocab)), 2, seed=0)
    tokenizer = BertTokenizer(vocab=str(root / "tokenizer" / "vocab.txt"))
    named = save_classifier(tmp_path / "named", tokenizer, 2, seed=0, id2label={0: "neg", 1: "pos"},
                            label2id={"neg": 0, "pos": 1})
    no_label = tmp_path / "unlabelled.tsv"
    no_label.write_text("sentence\n" + "".join(f"the {w} cat\n" for w in FILLER[:20]))
    cases = [
        (["--teacher", str(other)], "different tokenizer vocabulary"),
        (["--recipe", "skd", "--team", str(named)], "was fine-tuned with labels ['neg', 'pos']"),
        (["--teacher", str(assets["pretrained"])], "no trained 2-label head"),
        (["--recipe", "xtremedistil", "--transfer-train-file", str(no_label)], "has no label column 'label'"),
        (["--recipe", "tinybert", "--layer-map", "s0:t9"], "teacher layer t9 is out of range"),
        (["--recipe", "tinybert", "--layer-map", "s0:t0,s1:t1,s2:t2"], "has 3 pairs but the student has only 2"),
        (["--recipe", "ernie-tiny", "--general-train-file", str(assets["general"])], "needs --pretrained-teacher"),
        (["--recipe", "kd", "--until-stage", "nowhere"], "is not a stage of kd"),
        (["--recipe", "skd", "--skd-sampling", "explicit", "--team", str(assets["member"]), "--skd-probs", "1"],
         "one weight per team member"),
    ]
    for flags, message in cases:
        args = ["distill", str(assets["student"]), "--teacher", str(assets["teacher"]), "--train-file",
                str(assets["train"]), "--validation-file", str(assets["dev"]), "--output", str(tmp_path / "out"),
                "--max-steps", "1", "--report-to", "none", *flags]
        assert main(args) == 2, flags
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and errors[0].startswith("nasbert distill: error: ") and message in errors[0], errors
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists(), flags


# Runs in a fresh interpreter where nasbert cannot be imported: plain transformers, as a user would.
_LOAD_WITHOUT_NASBERT = textwrap.dedent("""
    import json, sys
    for name in ("nasbert", "search_space", "supernet"):
        sys.modules[name] = None
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    for folder in sys.argv[1:]:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        batch = tokenizer(["the happy cat runs", "a sad dog"], padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits
        expected = torch.tensor(json.load(open(folder + "/expected_logits.json")))
        assert torch.allclose(logits, expected, atol=1e-5), (folder, logits, expected)
    print("ok", len(sys.argv) - 1)
""")


def test_every_recipe_folder_loads_with_plain_transformers(assets, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folders = [recipe_output(assets, name) for name in RECIPES]
    for folder in folders:  # the logits nasbert's own classes give, for the subprocess to compare
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        with torch.no_grad():
            logits = model(**tokenizer(["the happy cat runs", "a sad dog"], padding=True, return_tensors="pt")).logits
        (folder / "expected_logits.json").write_text(json.dumps(logits.tolist()))
    (tmp_path / "load.py").write_text(_LOAD_WITHOUT_NASBERT)
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", ""),
           "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}
    result = subprocess.run([sys.executable, str(tmp_path / "load.py"), *map(str, folders)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ok {len(folders)}" in result.stdout
