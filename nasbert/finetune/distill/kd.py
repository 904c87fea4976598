"""`kd`: logit distillation in one stage, the same loss and numbers as `nasbert finetune --teacher`.

    loss = (1 - alpha) task loss + alpha T^2 KL(softmax(z_t / T) || softmax(z_s / T))   (MSE of z for regression)

Defaults are finetune's: alpha 0.5, T 1.
"""

from __future__ import annotations

from nasbert.finetune.distill.registry import Recipe, Stage, StudentShape, register_recipe


def kd_stages(config, shape: StudentShape) -> list[Stage]:
    alpha = config.kd_alpha
    return [Stage("kd", {"hard": 1 - alpha, "soft": alpha}, evaluate=True)]


KD = register_recipe(Recipe("kd", "logit KD (soft CE at temperature T, weight alpha): finetune --teacher's loss",
                            kd_stages, defaults={"kd_alpha": 0.5, "kd_temperature": 1.0}))
