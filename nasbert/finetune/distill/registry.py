"""A recipe is a list of stages; `RECIPES` holds them by name (timm's `@register_model`, for distillers).

A stage says which data the student reads, which teacher it is compared with, which losses of
`nasbert.common.losses.TASK_LOSSES` it optimises (with their weights), for how long, which parts of the student
train, and whether the task head is evaluated (and the best epoch kept). The runner (`run.py`) turns each stage
into one Hugging Face Trainer run; a recipe module only builds the list, so it stays a few lines of data.

Light (no torch): the command line reads `RECIPES` for `--recipe`'s choices and each recipe's defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nasbert.finetune.distill.config import DistillConfig

DATA_KINDS = ("task", "general", "transfer")  # --train-file, --general-train-file, --transfer-train-file
TEACHER_KINDS = ("task", "pretrained", "team")  # --teacher, --pretrained-teacher, --teacher + --team (one per step)


@dataclass(frozen=True)
class Stage:
    """One Trainer run of a recipe."""

    name: str
    losses: dict[str, float]  # TASK_LOSSES name -> weight in the stage's total
    data: str = "task"
    teacher: str = "task"
    epochs: float | None = None  # None: --epochs
    trainable: int | None = None  # train only the top k units (head, last layer, .., embeddings); None: all
    head: str = "task"  # the label set of the head: "task" (--train-file) or "transfer" (--transfer-train-file)
    evaluate: bool = False  # evaluate the head each epoch and keep the best epoch (the stages that end a recipe)
    keep_best: bool = False  # after the stage, go back to the best weights so far if the dev loss rose

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "losses": dict(self.losses), "data": self.data, "teacher": self.teacher,
                "epochs": self.epochs, "trainable": self.trainable, "head": self.head, "evaluate": self.evaluate,
                "keep_best": self.keep_best}


@dataclass(frozen=True)
class StudentShape:
    """What a recipe may need to know of the student to list its stages."""

    layers: int  # distillable layers: a NAS-BERT student's blocks, a BERT's layers

    @property
    def units(self) -> int:
        """Parts that gradual unfreezing opens one at a time: the head, each layer, the embeddings."""
        return self.layers + 2


@dataclass(frozen=True)
class Recipe:
    """A named distiller: its stages, the defaults it brings, and the inputs it needs."""

    name: str
    summary: str  # one line for --help and the README
    stages: Callable[[DistillConfig, StudentShape], list[Stage]]
    defaults: dict[str, Any] = field(default_factory=dict)  # DistillConfig fields left None take these
    layer_map: str | None = None  # the default --layer-map; None: the recipe matches no layers
    needs: tuple[str, ...] = ()  # DistillConfig fields that must be given, e.g. ("transfer_train_file",)


RECIPES: dict[str, Recipe] = {}


def register_recipe(recipe: Recipe) -> Recipe:
    """Add a recipe under its name (a new distiller is one module that calls this); returns it."""
    if recipe.name in RECIPES:
        raise ValueError(f"a recipe named {recipe.name!r} is already registered")
    RECIPES[recipe.name] = recipe
    return recipe
