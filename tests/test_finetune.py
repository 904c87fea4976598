"""`nasbert finetune`: a tiny student learns a rule, KD from a fine-tuned teacher, bad input, plain-HF fine-tuning."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_assets import WORDS, write_vocab
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel, BertTokenizer

from nasbert import NasbertConfig, NasbertModel
from nasbert.cli import main
from nasbert.registration import save_student

ARCH = "32:M,F/16:S3,F"
FILLER = [w for w in WORDS if w not in ("happy", "sad")]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_tokenizer(folder: Path) -> BertTokenizer:
    folder.mkdir(parents=True, exist_ok=True)
    return BertTokenizer(vocab=str(write_vocab(folder / "vocab.txt")))


def make_student(folder: Path, tokenizer: BertTokenizer) -> Path:
    """An exported-like student folder: the bare encoder (no head), its code, the tokenizer."""
    torch.manual_seed(0)
    config = NasbertConfig(arch=ARCH, vocab_size=len(tokenizer), embedding_size=16, hidden_size=32, head_dim=8,
                           max_position_embeddings=64)
    return save_student(NasbertModel(config), folder, tokenizer)


def make_bert(folder: Path, tokenizer: BertTokenizer) -> Path:
    """A tiny BERT encoder folder, as a teacher before fine-tuning."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_tsv(path: Path, rows: int, seed: int) -> Path:
    """GLUE-style SST-2 layout; label 1 iff the sentence holds "happy" (label-0 sentences hold "sad")."""
    rng = random.Random(seed)
    lines = ["sentence\tlabel"]
    for i in range(rows):
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
        words.insert(rng.randrange(len(words) + 1), "happy" if i % 2 else "sad")
        lines.append(f"{' '.join(words)}\t{i % 2}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetune")
    tokenizer = make_tokenizer(root / "tokenizer")
    return {"root": root, "student": make_student(root / "student", tokenizer),
            "bert": make_bert(root / "bert", tokenizer),
            "train": write_tsv(root / "train.tsv", 512, seed=0), "dev": write_tsv(root / "dev.tsv", 64, seed=1)}


def finetune(assets, model: str, output: Path, *flags: str) -> int:
    return main(["finetune", str(assets[model]), "--train-file", str(assets["train"]), "--validation-file",
                 str(assets["dev"]), "--output", str(output), "--batch-size", "16", *flags])


def test_student_learns_the_rule_and_the_folder_reloads(assets, tmp_path, capsys):
    output = tmp_path / "ft"
    assert finetune(assets, "student", output, "--epochs", "10", "--lr", "1e-3") == 0
    out = capsys.readouterr().out
    assert "2-way classification of 'label' (0, 1) from sentence" in out and "validation: accuracy" in out
    results = json.loads((output / "eval_results.json").read_text())
    assert results["eval_accuracy"] >= 0.8 and "eval_f1" in results  # chance is 0.5
    assert results["eval_majority_accuracy"] == 0.5  # the dev rows alternate 0 / 1
    assert "no better on the validation set" not in out
    assert {"configuration_nasbert.py", "modeling_nasbert.py", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in output.iterdir()}
    assert list((output / "tensorboard").iterdir()) and not (output / "checkpoints").exists()
    config = json.loads((output / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"} and "AutoModelForSequenceClassification" in config["auto_map"]
    model = AutoModelForSequenceClassification.from_pretrained(output, trust_remote_code=True)
    assert model.config.num_labels == 2


def test_teacher_finetunes_then_distils_into_the_student(assets, tmp_path, capsys):
    teacher = tmp_path / "teacher-ft"
    assert finetune(assets, "bert", teacher, "--epochs", "1", "--lr", "1e-3", "--report-to", "none") == 0
    assert json.loads((teacher / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    student = tmp_path / "student-kd"
    assert finetune(assets, "student", student, "--epochs", "1", "--lr", "1e-3", "--teacher", str(teacher),
                    "--kd-alpha", "0.5", "--kd-temperature", "2", "--report-to", "none") == 0
    assert "KD from" in capsys.readouterr().out
    train = json.loads((student / "train_results.json").read_text())
    assert math.isfinite(train["train_loss"]) and math.isfinite(train["train_kd_loss"]) and train["train_kd_loss"] > 0


def test_regression_and_string_labels(assets, tmp_path, capsys):
    rng = random.Random(0)
    pairs, names = tmp_path / "pairs.jsonl", tmp_path / "names.csv"
    with pairs.open("w") as f:  # STS-B-like: float scores of sentence pairs
        for _ in range(48):
            a, b = (" ".join(rng.choice(WORDS) for _ in range(5)) for _ in range(2))
            f.write(json.dumps({"sentence1": a, "sentence2": b, "label": 3 + (a + " " + b).count("happy") / 2}) + "\n")
    names.write_text("text,label\n" + "".join(f"{rng.choice(FILLER)} cat,{('neg', 'pos', 'neutral')[i % 3]}\n"
                                              for i in range(48)))
    for data, flags in ((pairs, []), (names, ["--metric", "matthews"])):
        output = tmp_path / data.stem
        assert main(["finetune", str(assets["student"]), "--train-file", str(data), "--validation-file", str(data),
                     "--output", str(output), "--epochs", "1", "--report-to", "none", *flags]) == 0
    out = capsys.readouterr().out
    assert "regression of 'label' from sentence1 + sentence2" in out and "validation: pearson" in out
    # Beside the model's dev MSE, that of always predicting the training labels' mean (here the same rows); one
    # epoch of 3 steps from a fresh head predicts near 0, far from labels near 3: the run says it did no better.
    labels = [json.loads(line)["label"] for line in pairs.read_text().splitlines()]
    mean = sum(labels) / len(labels)
    results = json.loads((tmp_path / "pairs" / "eval_results.json").read_text())
    assert results["eval_constant_mse"] == pytest.approx(sum((mean - y) ** 2 for y in labels) / len(labels))
    assert results["eval_mse"] >= results["eval_constant_mse"]
    assert ("warning: this run did no better on the validation set than a constant prediction: its validation MSE"
            in out)
    config = json.loads((tmp_path / "pairs" / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1  # num_labels 1
    assert "validation: matthews" in out
    assert json.loads((tmp_path / "names" / "config.json").read_text())["label2id"] == {"neg": 0, "neutral": 1,
                                                                                       "pos": 2}


def test_bad_input_exits_2_with_one_sentence(assets, tmp_path, capsys):
    other_vocab = tmp_path / "other" / "vocab.txt"
    other_vocab.parent.mkdir()
    other_vocab.write_text((assets["root"] / "tokenizer" / "vocab.txt").read_text() + "zebra\n")
    other = make_bert(tmp_path / "other-bert", BertTokenizer(vocab=str(other_vocab)))
    no_text = tmp_path / "numbers.csv"
    no_text.write_text("a,b,c,label\n1,2,3,0\n4,5,6,1\n")
    (tmp_path / "empty").mkdir()
    cases = [
        (["--train-file", str(tmp_path / "missing.tsv")], "does not exist"),
        (["--label-column", "sentiment"], "no label column 'sentiment'"),
        (["--train-file", str(no_text), "--validation-file", str(no_text)], "no text column found"),
        (["--teacher", str(other)], "different tokenizer vocabulary"),
        (["--teacher", str(assets["bert"])], "no trained 2-label head"),  # not fine-tuned yet
        (["--metric", "pearson"], "does not fit a classification task"),
    ]
    for flags, message in cases:
        args = ["finetune", str(assets["student"]), "--train-file", str(assets["train"]), "--validation-file",
                str(assets["dev"]), "--output", str(tmp_path / "out"), *flags]
        assert main(args) == 2, flags
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert len(errors) == 1 and errors[0].startswith("nasbert finetune: error: ") and message in errors[0], errors
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    for folder, message in ((tmp_path / "empty", "config.json is missing"), (tmp_path / "nowhere", "does not exist")):
        assert main(["finetune", str(folder), "--train-file", str(assets["train"]), "--validation-file",
                     str(assets["dev"])]) == 2
        assert message in capsys.readouterr().err


# Runs in a fresh interpreter where nasbert cannot be imported: only transformers + datasets, as a user would.
_PLAIN_TRAINER_SCRIPT = textwrap.dedent("""
    import sys
    for name in ("nasbert", "search_space", "supernet"):
        sys.modules[name] = None  # any import of them now raises ImportError
    try:
        import nasbert
        raise SystemExit("nasbert was importable")
    except ImportError:
        pass
    import torch
    torch.set_num_threads(1)
    from datasets import load_dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    folder, train_file, out = sys.argv[1:4]
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=2)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    data = load_dataset("csv", data_files=train_file, delimiter="\\t", split="train")
    data = data.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=32), batched=True,
                    remove_columns=["sentence"])
    args = TrainingArguments(output_dir=out + "/run", max_steps=4, per_device_train_batch_size=8, learning_rate=1e-3,
                             report_to=[], use_cpu=True, save_strategy="no")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                     data_collator=DataCollatorWithPadding(tokenizer)).train()
    assert result.training_loss == result.training_loss and result.global_step == 4  # finite, 4 steps
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "no weight changed"
    model.save_pretrained(out + "/saved")
    tokenizer.save_pretrained(out + "/saved")
    reloaded = AutoModelForSequenceClassification.from_pretrained(out + "/saved", trust_remote_code=True)
    batch = tokenizer(["the happy cat runs", "a sad dog"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model.eval()(**batch).logits, reloaded.eval()(**batch).logits)
    print("ok", type(reloaded).__name__)
""")


def test_exported_folder_finetunes_with_a_plain_trainer_where_nasbert_is_missing(assets, tmp_path):
    script = tmp_path / "plain_trainer.py"
    script.write_text(_PLAIN_TRAINER_SCRIPT)
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1",
           "OMP_NUM_THREADS": "1", "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    result = subprocess.run([sys.executable, str(script), str(assets["student"]), str(assets["train"]),
                             str(tmp_path / "out")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok NasbertForSequenceClassification" in result.stdout


def test_a_model_that_predicts_one_class_or_the_mean_is_called_stalled():
    """Whichever class a stalled classifier settles on, it scores no more than the rows' most common class; a
    regressor is judged against the training labels' mean, what it could predict without its inputs."""
    from transformers import EvalPrediction

    from nasbert.finetune.config import Task
    from nasbert.finetune.metrics import metrics_function, stall_note

    labels = np.array([1, 1, 1, 0])  # the training rows' majority is 0 below; these rows' is 1
    classes = Task(["sentence"], "label", ["0", "1"])
    compute = metrics_function(classes, "accuracy", train_labels=[0, 0, 0, 1])
    one_class = compute(EvalPrediction(predictions=np.tile([0.0, 1.0], (4, 1)), label_ids=labels))
    assert one_class["accuracy"] == one_class["majority_accuracy"] == 0.75
    assert "no higher than the 0.7500" in stall_note({f"eval_{k}": v for k, v in one_class.items()})
    right = compute(EvalPrediction(predictions=np.eye(2)[labels], label_ids=labels))
    assert stall_note({f"eval_{k}": v for k, v in right.items()}) is None
    assert "majority_accuracy" not in metrics_function(classes, "accuracy")(
        EvalPrediction(predictions=np.eye(2)[labels], label_ids=labels))

    scores = Task(["sentence1", "sentence2"], "score", None)
    compute = metrics_function(scores, "pearson", train_labels=[2.0, 4.0])  # mean 3
    gold = np.array([1.0, 2.0, 4.0, 5.0])
    near = compute(EvalPrediction(predictions=gold[:, None] + 0.1, label_ids=gold))
    assert near["constant_mse"] == pytest.approx(2.5) and near["mse"] == pytest.approx(0.01)
    assert stall_note({f"eval_{k}": v for k, v in near.items()}) is None
    flat = compute(EvalPrediction(predictions=np.full((4, 1), 0.5), label_ids=gold))
    assert "validation MSE 8.7500 is no lower than the 2.5000" in stall_note({f"eval_{k}": v for k, v in flat.items()})
