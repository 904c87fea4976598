"""The shell commands the documentation shows, for tests that parse them (README.md, docs/benchmarks.md)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bash_lines(document: str) -> list[str]:
    """Every line of the document's ```bash blocks, continuations joined and `  # comments` cut, in order; a
    line `F="..."` (the flags a benchmark's commands share) is kept as it is."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / document).read_text(), flags=re.S):
        lines += [line.split("  #")[0].strip() for line in block.replace("\\\n", " ").splitlines()]
    return lines
