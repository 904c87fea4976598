"""One table and one plot from several `nasbert compare` runs of one task (e.g. a budget added to a workdir later).

    python bench/merge_compare.py W/compare2ep-sst2 W/compare2ep-eighth-sst2 --output docs/pareto-sst2.png

Each model is taken from the first run that has it (the teacher once); the runs must share the metric and the
latency conditions, since their timings are put on one axis. Prints the merged table (markdown) with the margins
of every budget.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nasbert.baselines.margins import budget_margins
from nasbert.baselines.report import markdown, plot


def merged(folders: list[Path]) -> dict:
    """The first run's payload with every later run's models that it lacks appended; each run's timing note kept."""
    runs = [json.loads((folder / "compare.json").read_text()) for folder in folders]
    first = runs[0]

    def setting(run: dict) -> tuple:  # what must match for one axis and one column (a run's date need not)
        return run["metric"], run["recipe"], {k: v for k, v in run["latency_conditions"].items() if k != "date"}

    for folder, run in zip(folders[1:], runs[1:]):
        if setting(run) != setting(first):
            sys.exit(f"error: {folder} has another metric, recipe or latency conditions than {folders[0]}: its "
                     "runs cannot share one table")
        names = {m["name"] for m in first["models"]}
        first["models"] += [m for m in run["models"] if m["name"] not in names]
    first["latency_note"] = "; ".join(f"{folder.name}: {run['latency_note']}" for folder, run in zip(folders, runs))
    first["margins"] = budget_margins(first["models"])  # every budget's, not only the first run's
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="`nasbert compare` output folders, one task")
    parser.add_argument("--output", type=Path, required=True, help="the plot (.png)")
    args = parser.parse_args()
    payload = merged(args.folders)
    plot(payload, args.output)
    print(markdown(payload))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
