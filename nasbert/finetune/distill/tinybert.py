"""`tinybert`: TinyBERT's task distillation (Jiao et al., Findings of EMNLP 2020), its two phases.

1. intermediate (`--intermediate-epochs`): on the task data, sum over mapped layers of
   MSE(attention scores) + MSE(H_s W_h, H_t), plus MSE(E_s W_e, E_t) on the embeddings (TinyBERT/task_distill.py);
2. prediction (`--epochs`): soft cross-entropy of the logits at temperature T (MSE for regression), the head
   evaluated each epoch and the best epoch kept.

The map is `uniform` (g(m) = m k). Chosen where the paper leaves it open or our students differ:
- attention scores are the unnormalised Q K^T / sqrt(d) (as the paper), compared over real tokens only (the
  code zeroes masked scores); where the student and the teacher have different head counts, the head-mean
  score maps are compared;
- a NAS-BERT student's block s holds 0 or more attention layers: its *last* attention layer is compared with
  the teacher layer the map gives block s; a block without attention has no attention term (a note says so);
- one learned W_h per mapped student layer (TinyBERT shares one because its layers all have one width);
- no data augmentation (TinyBERT's GloVe/BERT augmentation is a data step; give an augmented --train-file).
"""

from __future__ import annotations

from nasbert.finetune.distill.registry import Recipe, Stage, StudentShape, register_recipe

LATENT = {"attention_mse": 1.0, "hidden_mse": 1.0, "embedding_mse": 1.0}


def tinybert_stages(config, shape: StudentShape) -> list[Stage]:
    return [Stage("intermediate", dict(LATENT), epochs=config.intermediate_epochs),
            Stage("prediction", {"soft": 1.0}, evaluate=True)]


TINYBERT = register_recipe(Recipe("tinybert", "TinyBERT task distillation: attention + hidden (W_h) + embedding "
                                  "MSE, then prediction-layer KD", tinybert_stages, {"kd_temperature": 1.0},
                                  layer_map="uniform"))
