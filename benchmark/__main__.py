"""`python -m benchmark` runs the atbench CLI."""
import sys

from benchmark.cli import main

sys.exit(main())
