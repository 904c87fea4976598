"""The README's Python examples run as written (the loading example on the folder the API example saves)."""

from __future__ import annotations

import re
from pathlib import Path

from tiny_assets import write_vocab
from transformers import BertTokenizerFast

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    api = [b for b in blocks if "save_student(" in b]
    loading = [b for b in blocks if "from_pretrained(\"students/2ms\"" in b]
    assert len(api) == 1 and len(loading) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(api[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "students/demo/model.safetensors").exists()
    folder = tmp_path / "students/demo"
    BertTokenizerFast(vocab=str(write_vocab(tmp_path / "vocab.txt"))).save_pretrained(folder)
    exec(compile(loading[0].replace("students/2ms", "students/demo"), str(README), "exec"), namespace)
    assert type(namespace["model"]).__name__ == "NasbertForSequenceClassification"
