"""Validate an arch string and print its size: the same as `nasbert arch`.

    python tools/arch.py "256:M,F,S5,F,I,I/512:M,F,M,F,M,F/128:M,F,I,I,I,I/512:M,F,M,F,M,F"
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["arch", *sys.argv[1:]]))
