"""Shared by every stage: the teacher and its layers, corpora, masking, losses, checkpoints, DDP."""
