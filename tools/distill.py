"""Distil a student on a task from fine-tuned teachers: the same as `nasbert distill` (see `--help`).

    python tools/distill.py students/s8 --teacher ft/teacher --train-file sst2/train.tsv \
        --validation-file sst2/dev.tsv --recipe pkd-skip --output distilled/s8-pkd
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["distill", *sys.argv[1:]]))
