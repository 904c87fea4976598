"""Progress prints plain lines (no carriage returns) when the stream is not a terminal."""

from __future__ import annotations

import io

from nasbert.common.progress import LineProgress, progress_bar


def test_log_stream_gets_a_bounded_number_of_plain_lines():
    stream = io.StringIO()
    bar = progress_bar(total=1000, desc="train", stream=stream, lines=10)
    assert isinstance(bar, LineProgress)
    for step in range(1000):
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 10
    assert lines[-1] == "train: 1000/1000 (100%) loss=0.001"


def test_iteration_and_resume_offset():
    stream = io.StringIO()
    items = list(progress_bar(range(7), desc="x", stream=stream, lines=100))
    assert items == list(range(7))
    assert stream.getvalue().splitlines()[-1] == "x: 7/7 (100%)"
    stream = io.StringIO()
    bar = progress_bar(total=10, initial=8, desc="r", stream=stream, lines=10)
    bar.update(2)
    bar.close()
    assert stream.getvalue().splitlines() == ["r: 10/10 (100%)"]
