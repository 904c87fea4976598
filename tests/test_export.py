"""export: every init writes a folder plain transformers loads; supernet init is exact; refinement works and
resumes exactly; the model card is filled; bad input exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from tiny_assets import make_corpus, make_tiny_teacher

from nasbert.cli import main
from nasbert.export.config import RefineConfig
from nasbert.export.inherit import INITS
from nasbert.export.pipeline import ExportOptions, ExportRequest, export_students
from nasbert.export.refine import RefineRecipe
from nasbert.modeling_nasbert import NasbertForMaskedLM
from nasbert.train_supernet.recipe import TrainConfig, train_supernet
from nasbert.train_supernet.run import load_run
from search_space import Arch

ARCH = "32:M,F,S3,I/16:F,M,S5,I"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    teacher = make_tiny_teacher(root / "teacher", layers=4)
    corpus = make_corpus(root / "corpus.txt", 300)
    path = train_supernet(TrainConfig(teacher=str(teacher), train_files=[str(corpus)], output=str(root / "run"),
                                      num_blocks=2, seq_len=32, batch_size=8, widths=[16, 32], max_steps=20,
                                      eval_every=100, save_every=100, candidates_per_block=5))
    return {"root": root, "run": path, "corpus": str(corpus)}


_LOAD_WITHOUT_NASBERT = textwrap.dedent("""
    import sys
    for name in ("nasbert", "search_space", "supernet"):
        sys.modules[name] = None
    try:
        import nasbert
        raise SystemExit("nasbert was importable")
    except ImportError:
        pass
    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer
    ids = torch.load(sys.argv[1])
    for folder in sys.argv[2:]:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        mlm = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
        cls = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=3)
        assert mlm.cls.decoder.weight.data_ptr() == mlm.nasbert.embeddings.word_embeddings.weight.data_ptr()
        with torch.no_grad():
            torch.save(mlm(input_ids=ids).logits, folder + "/plain_logits.pt")
            assert cls.eval()(input_ids=ids).logits.shape == (ids.shape[0], 3)
        assert tokenizer("the cat").input_ids[0] == tokenizer.cls_token_id
    print("ok")
""")


def test_every_init_writes_a_folder_plain_transformers_loads(run, tmp_path):
    loaded = load_run(run["run"])
    folders = []
    for init in INITS:
        options = ExportOptions(init=init, measure=False)
        folders += export_students(loaded, [ExportRequest(init, Arch.parse(ARCH))], tmp_path / init, options)
    ids = torch.randint(5, 50, (2, 12))
    torch.save(ids, tmp_path / "ids.pt")
    (tmp_path / "load.py").write_text(_LOAD_WITHOUT_NASBERT)
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "")}
    result = subprocess.run([sys.executable, str(tmp_path / "load.py"), str(tmp_path / "ids.pt"),
                             *map(str, folders)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
    for folder in folders:
        model = NasbertForMaskedLM.from_pretrained(folder).eval()
        with torch.no_grad():
            assert torch.allclose(model(input_ids=ids).logits, torch.load(folder / "plain_logits.pt"), atol=1e-6)


def test_supernet_init_reproduces_the_supernet_chain(run, tmp_path):
    loaded = load_run(run["run"])
    (folder,) = export_students(loaded, [ExportRequest("s", Arch.parse(ARCH))], tmp_path / "s",
                                ExportOptions(init="supernet", measure=False))
    student = NasbertForMaskedLM.from_pretrained(folder).eval()
    ids = torch.randint(5, 50, (3, 16))
    with torch.no_grad():
        chain = loaded.supernet.forward_chain(loaded.teacher.embeddings(input_ids=ids), Arch.parse(ARCH))
        out = student.nasbert(ids).last_hidden_state
    assert (chain - out).abs().max() <= 1e-5


def test_hybrid_init_takes_teacher_layers_by_importance_and_the_supernets_convolutions(run, tmp_path):
    loaded = load_run(run["run"])
    states = {}
    for init in ("hybrid", "etd-impt", "supernet"):
        (folder,) = export_students(loaded, [ExportRequest(init, Arch.parse(ARCH))], tmp_path / init,
                                    ExportOptions(init=init, measure=False))
        states[init] = NasbertForMaskedLM.from_pretrained(folder).nasbert.encoder.state_dict()
    convolutions = ("blocks.0.layers.2.", "blocks.1.layers.2.")  # S3 and S5 in ARCH; the others are M and F
    for key, value in states["hybrid"].items():
        source = "supernet" if key.startswith(convolutions) else "etd-impt"
        assert torch.equal(value, states[source][key]), key
    assert any(key.startswith(convolutions) for key in states["hybrid"])
    assert not torch.equal(states["etd-impt"]["blocks.0.layers.2.op.depthwise.weight"],
                           states["supernet"]["blocks.0.layers.2.op.depthwise.weight"])


def _refine_losses(recipe_dir) -> dict[int, float]:
    rows = [json.loads(line) for line in (recipe_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["losses"]["a"]["total"] for r in rows}


class Crash(Exception):
    pass


def test_refinement_lowers_the_loss_and_resumes_exactly(run, tmp_path, monkeypatch):
    loaded = load_run(run["run"])

    def refine_into(name: str) -> None:
        config = RefineConfig(train_files=[run["corpus"]], output=str(tmp_path / f"{name}.refine"), steps=30,
                              batch_size=8, seq_len=32, lr=1e-3, warmup_steps=3, save_every=10, resume=True)
        export_students(loaded, [ExportRequest("a", Arch.parse(ARCH))], tmp_path / name,
                        ExportOptions(init="etd-impt", refine=config, measure=False))

    refine_into("reference")
    reference = _refine_losses(tmp_path / "reference.refine")
    assert sum(reference[s] for s in (28, 29, 30)) < sum(reference[s] for s in (1, 2, 3))

    original = RefineRecipe.save_checkpoint

    def crash_at_20(self):
        original(self)
        if self.step == 20:
            raise Crash

    monkeypatch.setattr(RefineRecipe, "save_checkpoint", crash_at_20)
    with pytest.raises(Crash):
        refine_into("crashed")
    assert not (tmp_path / "crashed").exists()  # nothing half-written
    monkeypatch.setattr(RefineRecipe, "save_checkpoint", original)
    refine_into("crashed")
    resumed = _refine_losses(tmp_path / "crashed.refine")
    assert [resumed[s] for s in range(21, 31)] == [reference[s] for s in range(21, 31)]
    card = (tmp_path / "crashed/README.md").read_text()
    assert "30 steps" in card and "etd-impt" in card


def test_model_card_fields_are_filled(run, tmp_path, capsys):
    lut = tmp_path / "lut.json"
    space = tmp_path / "space.json"
    space.write_text(json.dumps(load_run(run["run"]).space.to_json()))
    assert main(["latency", "profile", "--space", str(space), "--seq-len", "32", "--min-run-time", "0.03",
                 "--rounds", "1", "--output", str(lut), "--no-progress"]) == 0
    code = main(["export", str(run["run"]), "--arch", ARCH, "--output", str(tmp_path / "card"), "--lut", str(lut),
                 "--init", "supernet", "--onnx", "--int8"])
    assert code == 0
    card = (tmp_path / "card/README.md").read_text()
    facts = json.loads((tmp_path / "card/nasbert_export.json").read_text())
    for field in ("arch", "params", "flops", "teacher", "init", "predicted_latency_ms", "measured_latency_ms",
                  "latency_conditions", "measured_conditions", "supernet_data"):
        assert facts.get(field) not in (None, "", []), field
    assert (tmp_path / "card/model.onnx").exists() and facts["onnx_max_abs_diff"] <= 1e-4
    assert (tmp_path / "card/model.int8.onnx").exists() and 0.9 <= facts["onnx_int8_cosine"] <= 1 + 1e-6
    assert set(facts["runtime_latency_ms"]) == {"torch_fp32", "onnxruntime_fp32", "onnxruntime_int8"}
    assert ARCH in card and "predicted latency" in card and "measured latency" in card and "not measured" not in card
    assert f"{facts['onnx_int8_cosine']:.4f}" in card and "ONNX Runtime INT8" in card and "max abs difference" in card
    assert "nasbert finetune" in capsys.readouterr().out


def test_bad_export_input_exits_2_and_writes_nothing(run, tmp_path, capsys):
    base = ["export", str(run["run"]), "--no-measure"]
    assert main(base + ["--arch", "32:M,I,F/16:F,I,I,I", "--output", str(tmp_path / "a")]) == 2
    assert "identities may only end a block" in capsys.readouterr().err
    assert main(base + ["--arch", ARCH, "--refine-steps", "5", "--output", str(tmp_path / "b")]) == 2
    assert "needs --train-file" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    assert main(base + ["--arch", ARCH, "--output", str(tmp_path / "c")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(base + ["--search", str(tmp_path / "none.json"), "--output", str(tmp_path / "d")]) == 2
    assert not any((tmp_path / name).exists() for name in ("a", "b", "d"))
