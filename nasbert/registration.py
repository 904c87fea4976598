"""Registration with the transformers Auto classes, and saving a student as a self-contained folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import transformers

from nasbert.configuration_nasbert import NasbertConfig
from nasbert.modeling_nasbert import AUTO_CLASSES, NasbertPreTrainedModel

_HERE = Path(__file__).parent
CODE_FILES = ("configuration_nasbert.py", "modeling_nasbert.py")


def register_auto_classes() -> None:
    """Library mode: `import nasbert` makes the Auto classes know the `nasbert_student` model type."""
    transformers.AutoConfig.register(NasbertConfig.model_type, NasbertConfig, exist_ok=True)
    for auto_name, model_class in AUTO_CLASSES.items():
        getattr(transformers, auto_name).register(NasbertConfig, model_class, exist_ok=True)


def auto_map() -> dict[str, str]:
    """`auto_map` for config.json: every Auto class points at the code files copied beside the weights."""
    mapping = {"AutoConfig": "configuration_nasbert.NasbertConfig"}
    mapping.update({name: f"modeling_nasbert.{cls.__name__}" for name, cls in AUTO_CLASSES.items()})
    return mapping


def save_student(model: NasbertPreTrainedModel, output_dir: str | Path, tokenizer=None) -> Path:
    """Write a folder that loads with plain transformers (`trust_remote_code=True`) where nasbert is absent."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.config.auto_map = auto_map()
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(output_dir)
    for name in CODE_FILES:
        shutil.copyfile(_HERE / name, output_dir / name)
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    return output_dir
