"""Entry point of ``python -m core``."""

import os
import sys

# Spinning OpenMP threads make a shared machine many times slower (see core.training.runs);
# set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from core.cli import main  # noqa: E402

sys.exit(main())
