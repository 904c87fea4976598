"""Stage 1, `nasbert train-supernet`: the supernet trained by block-wise distillation, ETD initialisation,
progressive shrinking, block-loss scoring, and reading a finished run folder (`run.py`)."""
