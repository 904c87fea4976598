"""Search the student -> teacher layer map: the same as `nasbert layer-map-search` (see `--help`).

    python tools/layer_map_search.py students/s8 --teacher ft/teacher --train-file sst2/train.tsv \
        --validation-file sst2/dev.tsv --output runs/s8-map
    nasbert distill students/s8 ... --recipe tinybert --layer-map runs/s8-map
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["layer-map-search", *sys.argv[1:]]))
