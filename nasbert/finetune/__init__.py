"""Stage 5, `nasbert finetune`: fine-tune a student (or any encoder) on a task with the HF Trainer, with
optional logit distillation from a fine-tuned teacher."""
