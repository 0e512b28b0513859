"""python -m heatkit: the command line (heatkit/cli.py)."""
import sys

from heatkit.cli import main

sys.exit(main())
