"""`python -m benchmark` runs the atbench CLI."""
import sys

from benchmark.commands.cli import main

sys.exit(main())
