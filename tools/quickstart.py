"""The whole pipeline at toy scale on a generated teacher and corpus: the same as `nasbert quickstart` (see `--help`).

    python tools/quickstart.py --output qs
    python tools/quickstart.py --output qs --fast       # what CI runs
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["quickstart", *sys.argv[1:]]))
