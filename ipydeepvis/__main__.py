"""``python -m ipydeepvis ...``: the same command line as the ``ipydeepvis`` script."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
