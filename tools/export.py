"""Export students: the same as `nasbert export` (see `--help`).

    python tools/export.py runs/sn --search search.json --init supernet --refine-steps 2000 \
        --train-file corpus.txt --output students
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
