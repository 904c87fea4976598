"""Fine-tune a student (or a teacher) on a GLUE-style task: the same as `nasbert finetune` (see `--help`).

    python tools/finetune.py students/s8 --train-file sst2/train.tsv --validation-file sst2/dev.tsv --output ft/s8
    python tools/finetune.py students/s8 ... --teacher ft/teacher --kd-alpha 0.5
    torchrun --nproc-per-node=2 tools/finetune.py ...
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))
