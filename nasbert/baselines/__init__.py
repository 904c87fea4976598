"""Baseline families: what a practitioner would build instead of a searched student, at the same measured latency.

    nasbert baselines RUN --latency-budget 20ms 10ms --lut lut.json --output baselines --refine-steps 200 ...
    nasbert compare --baselines baselines --students students/20ms --teacher TEACHER --train-file ... --seeds 3

`registry.py` holds `FAMILIES` (name -> proposer); `depth.py`, `width.py` and `uniform.py` are the built-in
families; `choose.py` picks, per budget, the member that measures within 10 % under it; `run.py` proposes and
exports them (`nasbert export`'s code path and refinement); `compare.py` fine-tunes and times every model side by
side and reports (`report.py`).
"""
