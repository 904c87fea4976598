"""Measure a member end to end before it is exported: a bare student of its arch (random weights: the time does
not depend on them), timed as `nasbert export` and `nasbert search` time students, under the table's conditions."""

from __future__ import annotations

from collections.abc import Callable

import torch

from nasbert.latency.lut import Conditions, LatencyTable, LatencyTableError
from nasbert.latency.measure import gauge_reference_ms, measure_model_ms
from nasbert.modeling_nasbert import NasbertModel
from nasbert.student import student_config


def arch_timer(lut: LatencyTable, min_run_time_s: float = 1.0, rounds: int = 3) -> Callable[[str], float] | None:
    """arch -> measured ms, or None where the table is for another machine or settings than this one."""
    c = lut.conditions
    try:
        lut.require(Conditions.current(c.device, c.threads, c.batch_size, c.seq_len, c.dtype))
    except LatencyTableError:
        return None

    def time_arch(arch: str) -> float:
        torch.manual_seed(0)
        model = NasbertModel(student_config(lut.space, arch), add_pooling_layer=False)  # as export measures it
        return measure_model_ms(model, c.batch_size, c.seq_len, c.threads, c.device, c.dtype, min_run_time_s, rounds,
                                gauge_reference_ms(lut))

    return time_arch
