"""Explain an image classifier with many attribution methods in one run, side by side: the command
line of heatkit (heatkit/cli.py), also installed as the console command `heatmap_script`.

    python heatmap_script.py -h
"""
import sys

from heatkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
