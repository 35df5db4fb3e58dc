"""``python -m brickrun``: the same as the ``brickrun`` command."""

import sys

from brickrun.cli import main

sys.exit(main())
