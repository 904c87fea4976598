"""nasbert: compress a BERT-style teacher into small, fast, task-agnostic students (NAS-BERT + ETD).

`import nasbert` is light (no torch, no transformers), so the `nasbert` command starts at once. The model
classes load on first access (PEP 562), `from nasbert import NasbertModel` included, and that first access
registers the student with the transformers Auto classes (library mode), after which
`AutoModel.from_pretrained(student_dir)` works without `trust_remote_code`. `nasbert.register_auto_classes()`
does the registration alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nasbert.configuration_nasbert import NasbertConfig
    from nasbert.modeling_nasbert import (
        AUTO_CLASSES,
        NasbertForMaskedLM,
        NasbertForQuestionAnswering,
        NasbertForSequenceClassification,
        NasbertForTokenClassification,
        NasbertModel,
    )

__version__ = "0.1.0"

# name -> the module that defines it, imported (with transformers) on first access
_LAZY = {"NasbertConfig": "nasbert.configuration_nasbert",
         **{name: "nasbert.modeling_nasbert" for name in (
             "AUTO_CLASSES", "NasbertForMaskedLM", "NasbertForQuestionAnswering", "NasbertForSequenceClassification",
             "NasbertForTokenClassification", "NasbertModel")}}


def register_auto_classes() -> None:
    """Make the transformers Auto classes know the `nasbert_student` model type (imports transformers)."""
    from nasbert.registration import register_auto_classes as register

    register()


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nasbert' has no attribute {name!r}")
    register_auto_classes()
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["AUTO_CLASSES", "NasbertConfig", "NasbertForMaskedLM", "NasbertForQuestionAnswering",
           "NasbertForSequenceClassification", "NasbertForTokenClassification", "NasbertModel", "__version__",
           "register_auto_classes"]
