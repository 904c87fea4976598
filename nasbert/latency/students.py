"""`nasbert latency measure`: an exported student folder timed end to end, and the table's prediction for it;
and `arch_timer`, which search uses to time its leaders the same way.

The student is timed under the table's conditions (device, threads, batch, seq len, dtype, runtime, precision;
each may be given instead, and the table refuses conditions it was not profiled under) or, without a table,
under the given ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from nasbert.latency.lut import MODEL_HEADS, Conditions, LatencyTable
from nasbert.latency.measure import (
    UsualSpeed,
    gauge_reference_ms,
    load_student_folder,
    measure_model_at_usual_speed,
    measure_model_ms,
)
from nasbert.modeling_nasbert import NasbertModel
from nasbert.student import student_config
from search_space import Arch, SearchSpace


@dataclass
class StudentTiming:
    folder: str
    model_class: str  # the class the folder was saved as, e.g. NasbertForSequenceClassification
    conditions: Conditions
    measured: UsualSpeed
    predicted_ms: float | None = None
    calibrated: bool = False  # whether the prediction used the table's calibration
    no_prediction: str | None = None  # why the table could not predict this student

    def report_lines(self) -> list[str]:
        """What `nasbert latency measure` prints."""
        timing = self.measured.entries[0]
        lines = [f"{self.folder}: {timing.median_ms:.3f} ms median (IQR {timing.iqr_ms:.3f} ms, "
                 f"{timing.runs_count} runs) as {self.model_class}, {self.conditions.describe()}",
                 self.measured.note()]
        if self.no_prediction is not None:
            lines.append(f"no prediction: {self.no_prediction}")
        elif self.predicted_ms is not None:
            error = (self.predicted_ms - timing.median_ms) / timing.median_ms * 100
            kind = "calibrated" if self.calibrated else "raw sum"
            lines.append(f"predicted {self.predicted_ms:.3f} ms ({kind}), error {error:+.1f} %")
        return lines


def measure_student(folder: str, lut: str | None = None, device: str | None = None, threads: int | None = None,
                    batch_size: int | None = None, seq_len: int | None = None, dtype: str | None = None,
                    min_run_time_s: float = 1.0, rounds: int = 3, runtime: str | None = None,
                    precision: str | None = None) -> StudentTiming:
    """Time the student in `folder` end to end; with a table (`lut`, a path), under its conditions where none are
    given, and with its prediction for the student's arch."""
    table = LatencyTable.load(lut) if lut else None
    if table is not None:
        cond = table.conditions
        table.require_runtime(runtime, precision)
        if precision is None and dtype is None:
            precision = cond.precision
        asked = Conditions.current(device or cond.device, threads or cond.threads, batch_size or cond.batch_size,
                                   seq_len or cond.seq_len, dtype, runtime or cond.runtime, precision)
        table.require(asked)
    else:
        asked = Conditions.current(device or "cpu", threads, batch_size or 1, seq_len or 128, dtype, runtime or "torch",
                                   precision)
    model = load_student_folder(folder)
    measured = measure_model_at_usual_speed(model, asked.batch_size, asked.seq_len, asked.threads, asked.device,
                                            asked.dtype, min_run_time_s, rounds, gauge_reference_ms(table),
                                            asked.runtime, asked.precision)
    result = StudentTiming(folder, type(model).__name__, asked, measured)
    config = model.config
    if table is not None and getattr(config, "arch", None) is not None:
        if not (config.embedding_projection and config.output_projection):
            result.no_prediction = "the table's students always have the E->w and w->H projections, this one does not"
            return result
        table.check_space(space_of(table, config))
        result.predicted_ms = table.predict_ms(config.arch, MODEL_HEADS.get(type(model).__name__, ()))
        result.calibrated = table.calibration is not None
    return result


def space_of(table: LatencyTable, config) -> SearchSpace:
    """The table's space with the student's own sizes, so a student of another shape is refused."""
    return replace(table.space, hidden_size=config.hidden_size, embedding_size=config.embedding_size,
                   head_dim=config.head_dim, ffn_ratio=config.ffn_ratio, vocab_size=config.vocab_size,
                   max_position_embeddings=config.max_position_embeddings, type_vocab_size=config.type_vocab_size)


def arch_timer(table: LatencyTable, min_run_time_s: float = 1.0, rounds: int = 3
               ) -> Callable[[str, int | None], float]:
    """(arch, FFN ratio or None for the space's) -> ms of a bare NasbertModel of that arch (random weights: the
    time does not depend on them) timed end to end under the table's conditions, in its runtime and precision, as
    `nasbert export` measures a student; any width the space's head dim divides (a refined grid), not only the
    table's, and any FFN ratio.
    Refused (LatencyTableError or UserError, one sentence) where the table is not for this machine and settings
    or its runtime is not installed here."""
    c = table.conditions
    table.require(Conditions.current(c.device, c.threads, c.batch_size, c.seq_len, c.dtype, c.runtime, c.precision))

    def time_arch(arch: str, ffn_ratio: int | None = None) -> float:
        torch.manual_seed(0)
        parsed = Arch.parse(arch)  # any head-multiple width: timing needs no table entry for it
        space = table.space.with_widths(b.width for b in parsed)
        space = space if ffn_ratio is None else space.with_ffn_ratio(ffn_ratio)
        model = NasbertModel(student_config(space, parsed), add_pooling_layer=False)
        return measure_model_ms(model, c.batch_size, c.seq_len, c.threads, c.device, c.dtype, min_run_time_s, rounds,
                                gauge_reference_ms(table), c.runtime, c.precision)

    return time_arch
