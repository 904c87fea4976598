"""Budgets with units: latency `20ms`, `0.02s`, `1500us`; parameters `10M`, `500k`, `1.5G`, `12000000`."""

from __future__ import annotations

import re

from nasbert.errors import UserError

_LATENCY_UNITS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}
_PARAM_UNITS = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9, "b": 1e9, "B": 1e9}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"


def parse_latency_ms(text: str) -> float:
    """'20ms' -> 20.0, '0.02s' -> 20.0; a unit is required (a bare number is the classic ms/s mix-up)."""
    match = re.fullmatch(_NUMBER + r"\s*(ms|s|us|µs)", str(text).strip())
    if not match:
        raise UserError(f"latency budget {text!r} needs a number and a unit, e.g. 20ms or 0.02s")
    value = float(match.group(1)) * _LATENCY_UNITS[match.group(2)]
    if value <= 0:
        raise UserError(f"latency budget {text!r} must be positive")
    return value


def parse_params(text: str) -> int:
    """'10M' -> 10_000_000, '500k' -> 500_000, '1.5G' -> 1_500_000_000."""
    match = re.fullmatch(_NUMBER + r"\s*([kKmMgGbB]?)", str(text).strip())
    if not match:
        raise UserError(f"params budget {text!r} is not a count, e.g. 10M, 500k or 12000000")
    value = int(round(float(match.group(1)) * _PARAM_UNITS[match.group(2)]))
    if value <= 0:
        raise UserError(f"params budget {text!r} must be positive")
    return value
