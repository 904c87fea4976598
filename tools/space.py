"""Print the search space and how many architectures it holds: the same as `nasbert space` (see `--help`).

    python tools/space.py                          # NAS-BERT's default space
    python tools/space.py --space runs/sn          # the space of a train-supernet run
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["space", *sys.argv[1:]]))
