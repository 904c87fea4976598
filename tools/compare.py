"""Compare students and their teacher on a task: the same as `nasbert compare` (see `--help`).

    python tools/compare.py --baselines baselines --students students/20ms --teacher TEACHER \\
        --train-file train.tsv --validation-file dev.tsv --output compare
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
