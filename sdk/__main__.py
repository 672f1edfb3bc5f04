"""`python -m pocketrec` runs the CLI."""

import sys

from pocketrec._cli import main

sys.exit(main())
