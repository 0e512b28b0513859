"""Build the test models: the command line of heatkit/testmodels/build.py (python create_model.py -h)."""
import sys

from heatkit.testmodels.build import main

if __name__ == "__main__":
    sys.exit(main())
