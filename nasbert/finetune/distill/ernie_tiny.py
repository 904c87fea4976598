"""`ernie-tiny`: ERNIE-Tiny's four-stage progressive distillation (Su et al., arXiv 2106.02241).

    1. general         --pretrained-teacher on --general-train-file, latent loss
    2. general-enhanced --teacher (fine-tuned) on --general-train-file, latent loss
    3. task-adaptive   --teacher on the task data, latent loss
    4. task-specific   --teacher on the task data, latent + alpha soft-label + (1 - alpha) hard-label loss

One schedule, resumable by stage (`--until-stage NAME` stops after a stage, `--resume` continues). The paper's
"latent distillation" formula was not available; it is read as TinyBERT's intermediate loss (attention-score
MSE + hidden MSE through a learned projection + embedding MSE, `--layer-map uniform`), the reading
`peers-2026.md` gives; projections carry from stage to stage. The stages 1-3 run `--intermediate-epochs`
(default `--epochs`), stage 4 `--epochs` with the head evaluated each epoch. Soft labels at T 1, alpha 0.5.
"""

from __future__ import annotations

from nasbert.finetune.distill.registry import Recipe, Stage, StudentShape, register_recipe
from nasbert.finetune.distill.tinybert import LATENT


def ernie_tiny_stages(config, shape: StudentShape) -> list[Stage]:
    alpha, epochs = config.kd_alpha, config.intermediate_epochs
    return [Stage("general", dict(LATENT), data="general", teacher="pretrained", epochs=epochs),
            Stage("general-enhanced", dict(LATENT), data="general", epochs=epochs),
            Stage("task-adaptive", dict(LATENT), epochs=epochs),
            Stage("task-specific", {**LATENT, "soft": alpha, "hard": 1 - alpha}, evaluate=True)]


ERNIE_TINY = register_recipe(Recipe(
    "ernie-tiny", "ERNIE-Tiny: general -> general-enhanced -> task-adaptive -> task-specific distillation",
    ernie_tiny_stages, {"kd_alpha": 0.5, "kd_temperature": 1.0}, layer_map="uniform",
    needs=("pretrained_teacher", "general_train_file")))
