"""The standalone student: heads, attention paths, and loading with plain transformers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch
from conftest import padded_batch
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

from nasbert import (
    NasbertConfig,
    NasbertForMaskedLM,
    NasbertForQuestionAnswering,
    NasbertForSequenceClassification,
    NasbertForTokenClassification,
    NasbertModel,
)
from nasbert.registration import save_student

ARCH = "32:M,F,S3,I/16:S5,M,F,F"


def tiny_config(**overrides) -> NasbertConfig:
    values = dict(arch=ARCH, vocab_size=99, embedding_size=24, hidden_size=32, head_dim=8, max_position_embeddings=64)
    values.update(overrides)
    return NasbertConfig(**values)


def test_every_head_gives_the_right_shapes():
    ids, mask = padded_batch(99, [7, 5], 7)
    config = tiny_config(num_labels=3)
    torch.manual_seed(0)
    base = NasbertModel(config).eval()(ids, attention_mask=mask, output_hidden_states=True)
    assert base.last_hidden_state.shape == (2, 7, 32) and base.pooler_output.shape == (2, 32)
    assert [h.shape[-1] for h in base.hidden_states] == [24, 32, 16, 32]  # embeddings, blocks, output
    mlm = NasbertForMaskedLM(config)(ids, attention_mask=mask, labels=ids)
    assert mlm.logits.shape == (2, 7, 99) and mlm.loss.ndim == 0
    cls = NasbertForSequenceClassification(config)(ids, attention_mask=mask, labels=torch.tensor([0, 2]))
    assert cls.logits.shape == (2, 3) and cls.loss.ndim == 0
    tok = NasbertForTokenClassification(config)(ids, attention_mask=mask, labels=torch.zeros_like(ids))
    assert tok.logits.shape == (2, 7, 3) and tok.loss.ndim == 0
    qa = NasbertForQuestionAnswering(config)(ids, attention_mask=mask, start_positions=torch.tensor([1, 2]),
                                             end_positions=torch.tensor([3, 4]))
    assert qa.start_logits.shape == qa.end_logits.shape == (2, 7) and qa.loss.ndim == 0
    assert isinstance(NasbertForMaskedLM(config).eval()(ids, return_dict=False), tuple)


def test_sdpa_and_eager_attention_agree():
    ids, mask = padded_batch(99, [7, 4], 7)
    torch.manual_seed(0)
    model = NasbertModel(tiny_config()).eval()
    with torch.no_grad():
        sdpa = model(ids, attention_mask=mask).last_hidden_state
        model.config._attn_implementation = "eager"
        eager = model(ids, attention_mask=mask).last_hidden_state
    assert (sdpa - eager)[mask.bool()].abs().max() <= 1e-5


def test_mlm_decoder_is_tied_to_the_word_embeddings(tmp_path):
    model = NasbertForMaskedLM(tiny_config())
    assert model.cls.decoder.weight.data_ptr() == model.nasbert.embeddings.word_embeddings.weight.data_ptr()
    save_student(model, tmp_path)
    loaded = NasbertForMaskedLM.from_pretrained(tmp_path)
    assert loaded.cls.decoder.weight.data_ptr() == loaded.nasbert.embeddings.word_embeddings.weight.data_ptr()
    assert torch.equal(loaded.cls.decoder.weight, model.cls.decoder.weight)


# Runs in a fresh interpreter where nasbert (and its sibling packages) cannot be imported.
_PLAIN_TRANSFORMERS_SCRIPT = textwrap.dedent("""
    import sys
    for name in ("nasbert", "search_space", "supernet"):
        sys.modules[name] = None  # any import of them now raises ImportError
    try:
        import nasbert
        raise SystemExit("nasbert was importable")
    except ImportError:
        pass
    import json, torch, transformers
    for folder, auto_name, out in zip(*[iter(sys.argv[1:])] * 3):  # FOLDER AUTO_CLASS OUT, repeated
        model = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True).eval()
        ids = torch.load(folder + "/ids.pt"); mask = torch.load(folder + "/mask.pt")
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        torch.save(logits, out)
        print(type(model).__module__)
""")


def test_saved_student_loads_with_plain_transformers(tmp_path):
    # One fresh interpreter loads both heads (starting one costs seconds of imports).
    argv, expected = [], {}
    for model_class, auto_class in [(NasbertForSequenceClassification, AutoModelForSequenceClassification),
                                    (NasbertForMaskedLM, AutoModelForMaskedLM)]:
        torch.manual_seed(0)
        model = model_class(tiny_config(num_labels=2)).eval()
        folder = tmp_path / model_class.__name__
        save_student(model, folder)
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "nasbert_student" and auto_class.__name__ in config["auto_map"]
        ids, mask = padded_batch(99, [9, 6], 9)
        torch.save(ids, folder / "ids.pt")
        torch.save(mask, folder / "mask.pt")
        with torch.no_grad():
            expected[folder.name] = model(input_ids=ids, attention_mask=mask).logits
        argv += [str(folder), auto_class.__name__, str(tmp_path / f"{folder.name}.pt")]
    script = tmp_path / "load.py"
    script.write_text(_PLAIN_TRANSFORMERS_SCRIPT)
    # The same thread count as this process, so the two forward passes reduce in the same order (bitwise equal).
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1",
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = subprocess.run([sys.executable, str(script), *argv], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    modules = [line for line in result.stdout.splitlines() if line.startswith("transformers_modules")]
    assert len(modules) == 2, result.stdout  # each class came from its folder's own code
    for name, logits in expected.items():
        assert torch.equal(torch.load(tmp_path / f"{name}.pt"), logits)


def test_library_mode_auto_classes_need_no_remote_code(tmp_path):
    model = NasbertForSequenceClassification(tiny_config(num_labels=2))
    save_student(model, tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(loaded) is NasbertForSequenceClassification
