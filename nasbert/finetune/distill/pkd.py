"""`pkd-skip`, `pkd-last`: BERT-PKD (Sun et al., EMNLP 2019), patient knowledge distillation.

    loss = (1 - alpha) CE + alpha T^2 KL(softmax(z_t / T) || softmax(z_s / T)) + beta L_PT
    L_PT = mean over (batch, mapped layers, hidden) of (h_s / |h_s| - h_t / |h_t|)^2 on the [CLS] vectors

as the authors' code computes it (`patience_loss`: F.normalize over the hidden axis, then F.mse_loss over the
stacked (B, layers, H) tensors). The mapped layers are PKD-Skip's (`--layer-map skip`: every k-th teacher layer)
or PKD-Last's (`last`); the student's last layer is left to the logits. Defaults are the authors' best SST-2 run
(intersun/PKD-for-BERT-Model-Compression, result summaries): T 10, alpha 0.5, beta 100 (their grid: T in
{5, 10, 20}, alpha in {0.2, 0.5, 0.7}, beta in {10, 100, 500, 1000}). One stage, as in the paper.

Left open by the paper, chosen here: a NAS-BERT student's blocks are narrower than the teacher, where PKD's
students were not; such a block's [CLS] passes through a learned linear map to the teacher's width before the
normalisation (a block of the teacher's width is compared as is, exactly the paper's loss). For regression
the KD term is the MSE of the predictions (PKD reports no regression task).
"""

from __future__ import annotations

from nasbert.finetune.distill.registry import Recipe, Stage, StudentShape, register_recipe

PKD_DEFAULTS = {"kd_alpha": 0.5, "kd_temperature": 10.0}


def pkd_stages(config, shape: StudentShape) -> list[Stage]:
    alpha = config.kd_alpha
    return [Stage("pkd", {"hard": 1 - alpha, "soft": alpha, "pkd": config.pkd_beta}, evaluate=True)]


PKD_SKIP = register_recipe(Recipe("pkd-skip", "BERT-PKD, every k-th teacher layer: logit KD + beta x MSE of "
                                  "L2-normalised [CLS] states", pkd_stages, PKD_DEFAULTS, layer_map="skip"))
PKD_LAST = register_recipe(Recipe("pkd-last", "BERT-PKD, the teacher's last layers: logit KD + beta x MSE of "
                                  "L2-normalised [CLS] states", pkd_stages, PKD_DEFAULTS, layer_map="last"))
