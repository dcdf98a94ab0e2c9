"""``ProgressFn``: the progress callback long operations take, ``progress(fraction, message)``."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[float, str], None]
