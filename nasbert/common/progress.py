"""Progress for long work: a tqdm bar on a terminal, a plain line every N steps in a log.

tqdm redraws its bar with carriage returns, which fill a log file (or CI output) with one long line; when the
stream is not a terminal, `progress_bar` prints `desc: 120/2000 (6%) loss=0.4123` lines instead, at most
`lines` of them over the whole run (and always the last one).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm.auto import tqdm


class LineProgress:
    """The part of tqdm's interface the stages use (update, set_postfix, n, refresh, close, iteration)."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", initial: int = 0,
                 disable: bool = False, lines: int = 20, stream: TextIO | None = None, **_: Any):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.n, self.disable, self.stream = desc, initial, disable, stream or sys.stderr
        self.every = max(1, (self.total or 0) // max(lines, 1)) if self.total else 100
        self.postfix = ""
        self._printed_at = initial

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, steps: int = 1) -> None:
        self.n += steps
        if self.n - self._printed_at >= self.every:
            self._print()

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(values or {}), **kwargs}
        self.postfix = " ".join(f"{k}={v}" for k, v in items.items())

    def refresh(self) -> None:
        if self.n - self._printed_at >= self.every:
            self._print()

    def close(self) -> None:
        if self.n != self._printed_at:
            self._print()

    def _print(self) -> None:
        self._printed_at = self.n
        if self.disable:
            return
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        of = f"/{self.total}" if self.total else ""
        print(f"{self.desc}: {self.n}{of}{share} {self.postfix}".rstrip(), file=self.stream, flush=True)


def progress_bar(iterable: Iterable | None = None, stream: TextIO | None = None, **kwargs: Any) -> tqdm | LineProgress:
    """tqdm(iterable, **kwargs) on a terminal; LineProgress with the same arguments otherwise."""
    stream = stream or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, file=stream, **kwargs)
    return LineProgress(iterable, stream=stream, **kwargs)
