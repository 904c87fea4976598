"""Train the supernet: the same as `nasbert train-supernet` (see `--help`).

    python tools/train_supernet.py --teacher DIR --train-file corpus.txt --output runs/sn --max-steps 2000
    torchrun --nproc-per-node=2 tools/train_supernet.py ...
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-supernet", *sys.argv[1:]]))
