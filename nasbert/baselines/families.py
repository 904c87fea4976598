"""Registers every built-in family (import this module to fill `FAMILIES`, in this order)."""

from nasbert.baselines import depth, uniform, width  # noqa: F401
from nasbert.baselines.registry import FAMILIES

__all__ = ["FAMILIES"]
