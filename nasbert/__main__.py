import sys

from nasbert.cli import main

sys.exit(main())
