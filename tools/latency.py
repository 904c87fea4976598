"""The latency lookup table: the same as `nasbert latency`.

    python tools/latency.py profile --output lut.json --threads 2       # time every module of the space
    python tools/latency.py calibrate --lut lut.json --samples 30       # fit a correction on whole students
    python tools/latency.py validate --lut lut.json --samples 30        # MAPE, max error, Kendall tau, plot
    python tools/latency.py measure students/NAME --lut lut.json        # one exported student end to end
"""

import sys

from nasbert.cli import main

if __name__ == "__main__":
    sys.exit(main(["latency", *sys.argv[1:]]))
