"""Baseline students per latency budget: the same as `nasbert baselines` (see `--help`).

    python tools/baselines.py runs/sn --latency-budget 20ms --lut lut.json --output baselines --refine-steps 200 \\
        --train-file corpus.txt
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["baselines", *sys.argv[1:]]))
