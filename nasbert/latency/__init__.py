"""Latency on the target device: a per-module lookup table, its calibration and validation, and timing helpers.

    table = profile_space(SearchSpace(), threads=2)          # lut.py holds the format, profile.py measures
    table.save("lut.json")
    LatencyTable.load("lut.json").predict_ms("256:M,F,I,I,I,I/...")
    measure_model_ms(model, batch_size=1, seq_len=128, threads=2)   # re-measure a winner end to end
"""

from nasbert.latency.calibrate import calibrate, fit_calibration, sample_archs
from nasbert.latency.lut import Calibration, Conditions, Entry, LatencyTable, LatencyTableError
from nasbert.latency.measure import load_student_folder, measure_model, measure_model_ms, time_call
from nasbert.latency.profile import profile_space
from nasbert.latency.validate import Validation, accuracy, plot_validation, validate

__all__ = ["Calibration", "Conditions", "Entry", "LatencyTable", "LatencyTableError", "Validation", "accuracy",
           "calibrate", "fit_calibration", "load_student_folder", "measure_model", "measure_model_ms",
           "plot_validation", "profile_space", "sample_archs", "time_call", "validate"]
