"""Convert an older run's pickled checkpoints to the safe format: the same as `nasbert convert-checkpoint`.

It loads the old pickles once, which can run any code they carry: convert only folders you trust.

    python tools/convert_checkpoint.py runs/sn
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert-checkpoint", *sys.argv[1:]]))
