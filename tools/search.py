"""Search the best students under budgets: the same as `nasbert search` (see `--help`).

    python tools/search.py runs/sn --latency-budget 20ms 10ms --lut lut.json --output search.json
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
