"""`xtremedistil`: XtremeDistilTransformers' task transfer (Mukherjee, Awadallah, Gao, arXiv 2106.04563).

A teacher fine-tuned on a *source* task (`--teacher`, e.g. SST-2) distils the student on that task's data
(`--transfer-train-file`, 10 % of it held out as its dev split), then the student is fine-tuned on the target
task (`--train-file`, e.g. STS-B), as `nasbert finetune` would, with a fresh head:

    1. transfer-representation: sum over the top-aligned layers (`--layer-map top`) of
       MSE(Dense(dropout([CLS]_s)), [CLS]_t), everything training (--intermediate-epochs);
    2. transfer-logits-uK: MSE of the logits, the head alone first, then one more unit opened per sub-stage
       top-down (head, last layer, .., first layer, embeddings) (--unfreeze-epochs each);
    3. transfer-labels-uK: cross-entropy on the source labels, with the same gradual unfreezing;
    4. target: fine-tuning on the target task (--epochs, best epoch kept).

After every sub-stage of 2 and 3 the student goes back to its best weights so far if the source dev loss rose
(the authors' "reset to the best checkpoint"). Chosen here: the dev loss is the source task loss in every
sub-stage (the authors' per-stage validation objective is not spelt out in the paper); no attention term (their
`--distil_attention` is optional); the embeddings are not in the representation loss; the Adam learning rate is
--lr for every stage (theirs: 3e-5), without their early stopping within a stage.
"""

from __future__ import annotations

from nasbert.finetune.distill.registry import Recipe, Stage, StudentShape, register_recipe


def xtremedistil_stages(config, shape: StudentShape) -> list[Stage]:
    stages = [Stage("transfer-representation", {"cls_mse": 1.0}, data="transfer", head="transfer",
                    epochs=config.intermediate_epochs)]
    for prefix, losses in (("transfer-logits", {"logit_mse": 1.0}), ("transfer-labels", {"hard": 1.0})):
        stages += [Stage(f"{prefix}-u{k}", losses, data="transfer", head="transfer", epochs=config.unfreeze_epochs,
                         trainable=k, keep_best=True) for k in range(1, shape.units + 1)]
    return stages + [Stage("target", {"hard": 1.0}, evaluate=True)]


XTREMEDISTIL = register_recipe(Recipe(
    "xtremedistil", "XtremeDistil task transfer: [CLS] MSE, logit MSE and labels with gradual unfreezing on a "
    "source task, then fine-tuning", xtremedistil_stages, layer_map="top", needs=("transfer_train_file",)))
