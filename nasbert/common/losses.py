"""Distillation losses."""

from __future__ import annotations

import torch


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean squared error over real tokens only: prediction, target (B, T, H); attention_mask (B, T), 1 = token."""
    squared = (prediction.float() - target.float()).pow(2).mean(dim=-1)  # (B, T)
    if attention_mask is None:
        return squared.mean()
    keep = attention_mask.to(squared.dtype)
    return (squared * keep).sum() / keep.sum().clamp_min(1.0)
